"""The one base class of the errors acodm-ray raises on purpose, and what a job reports as a user error.

Each error keeps the built-in base it always had (a bad value is still a `ValueError`, a missing file
a `FileNotFoundError`), so callers that catch those keep working; `AcodmError` lets a caller catch all
of ours at once. The jobs print `USER_ERRORS` as one line naming the problem and exit 2 instead of
showing a traceback (anything else is a bug and keeps its traceback)."""

from __future__ import annotations


class AcodmError(Exception):
    """Base of every error acodm-ray raises on purpose; its message names the bad input."""


class ConfigError(AcodmError, ValueError):
    """A configuration value is missing, unknown, or of the wrong type."""


# What a job reports as the user's problem: our errors, and the built-in ones our validation raises.
USER_ERRORS: tuple[type[BaseException], ...] = (
    AcodmError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
)
