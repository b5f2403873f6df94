"""What can be wrong with a corpus, one class per problem; every one is a `CorpusError` (and a
`ValueError`, as it always was), and its message names the bad source, file, column or domain."""

from __future__ import annotations

from acodm_ray.errors import AcodmError


class CorpusError(AcodmError, ValueError):
    """The corpus configuration or its data is unusable; the message names the bad thing."""


class UnknownSourceError(CorpusError):
    pass


class CorpusNotBuiltError(CorpusError):
    pass


class CorpusFileNotFoundError(CorpusError, FileNotFoundError):
    pass


class MissingColumnError(CorpusError):
    pass


class UnknownDomainError(CorpusError):
    pass


class DuplicateDomainError(CorpusError):
    pass


class EmptyDomainError(CorpusError):
    pass
