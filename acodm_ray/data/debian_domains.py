"""The seven domains of the bundled corpus: which Debian packages hold each, and how to read them.

Split out of `build` because this is the corpus's *content*, apart from the machinery that fetches,
samples and writes it: a new domain is one `DomainSpec` here (packages, a byte budget, an extractor
that turns the unpacked packages into documents), and the build needs no change. The extractors lean
on the pure text functions of `formats`; `build` cleans, samples and splits what they return.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from acodm_ray.data.formats import (
    DICT_ENTRIES_PER_DOC,
    decode_text,
    files_under,
    read_brs_text,
    read_maybe_gz,
    roff_to_text,
    split_bible_chapters,
    split_dictd,
)

MB = 1_000_000

Roots = dict[str, Path]  # package name -> directory it was unpacked into


def _python_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [
        decode_text(p.read_bytes())
        for pkg in packages
        for p in files_under(roots[pkg] / "usr" / "lib", (".py",))
    ]


def _header_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [
        decode_text(p.read_bytes())
        for pkg in packages
        for p in files_under(roots[pkg] / "usr" / "include", (".h",))
    ]


def _legal_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    """Licence texts plus the debian/copyright file of every package the build downloaded."""
    docs = [
        decode_text(p.read_bytes())
        for pkg in packages
        for p in files_under(roots[pkg] / "usr" / "share" / "common-licenses", ("",))
    ]
    for pkg in sorted(roots):
        docs += [
            decode_text(p.read_bytes())
            for p in files_under(roots[pkg] / "usr" / "share" / "doc", ("copyright",))
        ]
    return docs


def _manual_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [
        roff_to_text(decode_text(read_maybe_gz(p)))
        for pkg in packages
        for p in files_under(roots[pkg] / "usr" / "share" / "man", (".gz",))
    ]


def _dictionary_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    docs: list[str] = []
    for pkg in packages:
        for index in files_under(roots[pkg] / "usr" / "share" / "dictd", (".index",)):
            data = gzip.decompress(index.with_suffix(".dict.dz").read_bytes())
            docs += split_dictd(data, index.read_text(encoding="utf-8", errors="replace"))
    return docs


def _literature_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    docs: list[str] = []
    for pkg in packages:
        for path in files_under(roots[pkg] / "usr" / "lib", ("bible.data",)):
            docs += split_bible_chapters(read_brs_text(path.read_bytes()))
    return docs


def _latex_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [
        decode_text(read_maybe_gz(p))
        for pkg in packages
        for p in files_under(roots[pkg] / "usr" / "share" / "doc", (".tex", ".tex.gz"))
    ]


@dataclass(frozen=True)
class DomainSpec:
    """One domain: which packages hold it, how to turn them into documents, its byte budget."""

    name: str
    packages: tuple[str, ...]
    budget_bytes: int
    extract: Callable[[Roots, tuple[str, ...]], list[str]]
    description: str


def domain_specs(python: str = "3.11") -> list[DomainSpec]:
    """The seven domains, largest budget first. Budgets give Pile-like skew (8 MB vs 0.45 MB);
    each is at most what the packages really hold, measured on Debian 12."""
    return [
        DomainSpec(
            "python_code",
            (f"libpython{python}-stdlib", f"libpython{python}-minimal"),
            8 * MB,
            _python_docs,
            "Python standard library source (.py)",
        ),
        DomainSpec(
            "dictionary",
            ("dict-gcide",),
            6 * MB,
            _dictionary_docs,
            f"GCIDE (Webster 1913 + WordNet), {DICT_ENTRIES_PER_DOC} entries per document",
        ),
        DomainSpec(
            "c_headers",
            ("linux-libc-dev",),
            4 * MB,
            _header_docs,
            "Linux kernel UAPI C headers (.h)",
        ),
        DomainSpec(
            "manuals",
            ("manpages", "manpages-dev"),
            3 * MB,
            _manual_docs,
            "Linux man-pages, roff stripped to text",
        ),
        DomainSpec(
            "literature",
            ("bible-kjv-text",),
            2 * MB,
            _literature_docs,
            "King James Bible, one document per chapter",
        ),
        DomainSpec(
            "latex",
            ("texlive-science-doc",),
            1 * MB,
            _latex_docs,
            "LaTeX sources of TeX Live science package documentation (.tex)",
        ),
        DomainSpec(
            "legal",
            ("base-files",),
            450_000,
            _legal_docs,
            "/usr/share/common-licenses plus every downloaded package's copyright file",
        ),
    ]
