"""Build the bundled offline corpus: real text, written by others, from Debian packages.

The Pile is out of reach offline, so the default corpus imitates its *shape* instead: several
clearly different domains (code, headers, law, manuals, dictionary, scripture, LaTeX) with skewed
natural proportions (the largest domain ~20x the smallest). Every byte comes from a Debian package
fetched by name with `apt-get download` and unpacked with `dpkg-deb -x` into a temp dir (nothing is
installed), so the corpus is reproducible from the manifest's package versions and sha256 sums.

Output (`build_bundled_corpus`):
    <out_dir>/train.jsonl, <out_dir>/validation.jsonl   one {"text": ..., "domain": ...} per line
    <out_dir>/manifest.json                             packages, versions, sha256, sizes, seed

`make_tiny_slice` cuts the small, git-tracked slice in `acodm_ray/assets/tiny_corpus/` from it.
The pure text functions (`roff_to_text`, `split_dictd`, `lzw_decompress`, `read_brs_text`,
`split_bible_chapters`, `split_long_text`) are tested on inline samples; the build itself runs in
tests on a restricted domain set (`domains=`), with empty apt lists so the refresh path runs too.

Stale or missing apt lists (most container images delete `/var/lib/apt/lists`) are refreshed by
the build itself: when a package has no downloadable candidate or its download fails, it runs
`apt-get update` once (as root; otherwise it stops with the command to run) and retries.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from acodm_ray.config import cache_dir
from acodm_ray.errors import AcodmError

FORMAT_VERSION = 1
CORPUS_NAME = "debian-v1"
BUILD_SEED = 0
MAX_DOC_CHARS = 32_000  # longer files are cut at line boundaries so one file cannot eat a budget
VALIDATION_FRACTION = 0.03
MAX_VALIDATION_BYTES = 100_000
DICT_ENTRIES_PER_DOC = 40
TINY_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny_corpus"

MB = 1_000_000


class CorpusBuildError(AcodmError, RuntimeError):
    """The bundled corpus could not be built (missing tool, failed download, empty domain)."""


def default_corpus_dir() -> Path:
    """Where `acodm corpus build` puts the bundled corpus and `source: bundled` looks for it."""
    return cache_dir() / "corpus" / CORPUS_NAME


def log(msg: str) -> None:
    print(f"[corpus] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- generic text


def decode_text(data: bytes) -> str:
    """Bytes -> str: UTF-8 when valid, else Latin-1 (old TeX and man sources); NULs dropped and
    newlines normalised so every document is plain text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def split_long_text(text: str, max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Cut `text` into pieces of at most ~max_chars at line boundaries (a single longer line is
    kept whole), so documents stay comparable in size across domains."""
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        if current and size + len(line) > max_chars:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        pieces.append("".join(current))
    return pieces


def files_under(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files (no symlinks: Debian uses them for aliases) under root, sorted for
    determinism."""
    if not root.exists():
        return []
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name.endswith(suffixes)
    )


def read_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


# ------------------------------------------------------------------------------- roff (manuals)

_ROFF_CHARS = {
    "em": "--", "en": "-", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"',
    "oq": "'", "cq": "'", "bu": "*", "co": "(c)", "rg": "(R)", "tm": "(TM)", "de": " degrees",
    "mu": "x", "<=": "<=", ">=": ">=", "!=": "!=", "->": "->", "<-": "<-", "ti": "~", "ha": "^",
    "rs": "\\", "ba": "|", "or": "|", "sl": "/", "pl": "+", "eq": "=", "ga": "`", "aa": "'",
    "at": "@", "sh": "#", "Do": "$", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "ua": "^",
    "da": "v", "rA": "=>", "lA": "<=", "pc": ".", "ss": "ss", "+-": "+-", "12": "1/2",
}
_ROFF_STRINGS = {"lq": '"', "rq": '"', "R": "(R)", "Tm": "(TM)"}
_ROFF_SINGLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "t": "\t",
                ".": ".", "'": "'", "`": "`"}
_ROFF_ESCAPE = re.compile(
    r"""\\(?:
        (?P<font>f(?:\[[^\]]*\]|\(..|.))
      | (?P<size>s[-+]?(?:\(\d\d|\[\d+\]|\d))
      | \*(?:\[(?P<str_b>[^\]]*)\]|\((?P<str_p>..)|(?P<str_1>.))
      | \((?P<chr_p>..)
      | \[(?P<chr_b>[^\]]*)\]
      | (?P<single>.)
    )""",
    re.X,
)
_ROFF_ARG = re.compile(r'"((?:[^"]|"")*)"?|(\S+)')
_ALTERNATING = {"BR", "BI", "IB", "IR", "RB", "RI"}
_INLINE = {"B", "I", "SM", "SB"}
_PARAGRAPH = {"PP", "P", "LP", "HP", "sp"}
_NO_FILL = {"nf", "EX"}
_FILL = {"fi", "EE"}


def _roff_escape(m: re.Match[str]) -> str:
    if m["font"] or m["size"]:
        return ""
    name = m["str_b"] or m["str_p"] or m["str_1"]
    if name is not None:
        return _ROFF_STRINGS.get(name, "")
    name = m["chr_p"] or m["chr_b"]
    if name is not None:
        if name.startswith("u") and re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return _ROFF_CHARS.get(name, "")
    return _ROFF_SINGLE.get(m["single"], "")


def roff_unescape(text: str) -> str:
    """Replace roff escapes (fonts, sizes, named glyphs, strings) by plain text."""
    return _ROFF_ESCAPE.sub(_roff_escape, text)


def _roff_args(rest: str) -> list[str]:
    """Split a request's arguments the roff way: double quotes group, "" is a literal quote."""
    return [q.replace('""', '"') if p is None else p
            for q, p in ((m.group(1), m.group(2)) for m in _ROFF_ARG.finditer(rest))]


class _RoffText:
    """Collects output lines; in fill mode consecutive pieces join into one paragraph line, as
    roff would fill them (the lines "The", ".BR open ()", "system call" read "The open() system call")."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.para: list[str] = []
        self.fill = True
        self.tag_next = False  # after .TP the next piece is a tag on its own line

    def flush(self) -> None:
        if self.para:
            self.lines.append(" ".join(self.para))
            self.para = []

    def brk(self, blank: bool = False) -> None:
        self.flush()
        if blank:
            self.lines.append("")

    def line(self, text: str) -> None:
        self.flush()
        self.lines.append(text)

    def piece(self, text: str) -> None:
        if self.tag_next:
            self.tag_next = False
            self.line(text)
        elif self.fill:
            text = text.strip()
            if text and self.para and text[0] in ".,;:!?)]":
                self.para[-1] += text  # punctuation after a font macro hugs its word
            elif text:
                self.para.append(text)
        else:
            self.line(text)

    def text(self) -> str:
        self.flush()
        text = "\n".join(self.lines)
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def _roff_request(out: _RoffText, name: str, args: list[str]) -> None:
    """Apply one man(7) request; layout requests (RS, in, ft, ...) and unknown macros vanish."""
    args = [roff_unescape(a) for a in args]
    if name == "TH" and len(args) >= 2:
        out.line(f"{args[0]}({args[1]})")
    elif name in ("SH", "SS"):
        out.brk(blank=True)
        out.line(" ".join(args))
    elif name in _INLINE and args:
        out.piece(" ".join(args))
    elif name in _ALTERNATING:
        out.piece("".join(args))
    elif name in _PARAGRAPH:
        out.brk(blank=True)
    elif name in ("TP", "TQ"):
        out.brk(blank=name == "TP")
        out.tag_next = True
    elif name == "IP":
        out.brk(blank=True)
        if args:
            out.line(args[0])
    elif name == "br":
        out.brk()
    elif name in _NO_FILL:
        out.brk()
        out.fill = False
    elif name in _FILL:
        out.brk()
        out.fill = True
    elif name in ("UR", "MT", "UE", "ME") and args:
        out.piece("".join(args))


def roff_to_text(src: str) -> str:
    """Readable text from a man page's roff source: comments, macro definitions and layout
    requests go; headings, macro arguments and tables stay; font/size escapes are removed and
    filled paragraphs are joined. A `.so` page (an alias of another page) gives "" so it is
    skipped. Small on purpose: the aim is manual prose for an LM, not faithful typesetting."""
    src = re.sub(r"(?<!\\)\\\n", "", src)  # line continuations
    out = _RoffText()
    skip_until_dots = False
    table = None  # None | "format" | "rows"
    for raw in src.split("\n"):
        line = re.sub(r'(?<!\\)\\".*$', "", raw)  # \" comments
        if skip_until_dots:
            skip_until_dots = not line.startswith("..")
            continue
        if line[:1] in (".", "'"):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            name, rest = parts[0], parts[1] if len(parts) > 1 else ""
            if name == "so":
                return ""
            if name in ("de", "de1", "am", "ig"):
                skip_until_dots = True
            elif name == "TS":
                out.brk()
                table = "format"
            elif name == "TE":
                table = None
            else:
                _roff_request(out, name, _roff_args(rest))
            continue
        if not line.strip():
            if not raw.strip():  # a truly blank line (not a comment-only one) breaks
                out.brk(blank=True)
            continue
        if table == "format":
            if line.rstrip().endswith("."):
                table = "rows"
            continue
        text = roff_unescape(line)
        if table == "rows":
            out.line(text.replace("T{", "").replace("T}", ""))
        elif line[:1] in (" ", "\t") and out.fill:
            out.brk()  # a leading space breaks the line in roff
            out.piece(text)
        else:
            out.piece(text)
    return out.text()


# ------------------------------------------------------------------------------- dictd (gcide)

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}


def dictd_number(s: str) -> int:
    """Decode a dictd index number (base 64, most significant digit first)."""
    value = 0
    for c in s:
        value = value * 64 + _B64_VALUE[c]
    return value


def split_dictd(dict_data: bytes, index_text: str,
                entries_per_doc: int = DICT_ENTRIES_PER_DOC) -> list[str]:
    """Cut a dictd dictionary into documents of `entries_per_doc` consecutive entries.

    The index lists `headword<TAB>offset<TAB>length` (byte offsets into the .dict file); several
    headwords may share one entry, so entries are de-duplicated by (offset, length). Entries whose
    headword starts with "00-" are the database's own metadata and are dropped."""
    spans: set[tuple[int, int]] = set()
    for line in index_text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith("00-"):
            continue
        spans.add((dictd_number(fields[1]), dictd_number(fields[2])))
    entries = [decode_text(dict_data[o:o + n]).strip() for o, n in sorted(spans)]
    entries = [e for e in entries if e]
    return ["\n\n".join(entries[i:i + entries_per_doc]) + "\n"
            for i in range(0, len(entries), entries_per_doc)]


# ------------------------------------------------------------------------------- KJV (bible-kjv-text)


def lzw_decompress(codes: bytes, max_bits: int = 16, block_mode: bool = True) -> bytes:
    """Decode one Unix `compress` (LZW) stream without its 3-byte header.

    Codes are little-endian bit-packed, starting at 9 bits; when the code width grows (or a CLEAR
    code, 256, resets the table) the reader skips to the end of the current group of 8 codes,
    exactly as `compress` wrote them."""
    data = codes + b"\0\0\0"
    total_bits = len(codes) * 8
    first_free = 257 if block_mode else 256
    table = [bytes([i]) for i in range(256)] + [b""] * (first_free - 256)
    n_bits, origin, pos = 9, 0, 0
    max_code = (1 << n_bits) - 1
    limit = 1 << max_bits
    prev = b""
    out = bytearray()

    def aligned(p: int) -> int:
        group = n_bits * 8
        return origin + -(-(p - origin) // group) * group

    while pos + n_bits <= total_bits:
        if len(table) > max_code and n_bits < max_bits:
            pos = origin = aligned(pos)
            n_bits += 1
            max_code = (1 << n_bits) - 1
            continue
        i = pos >> 3
        code = ((data[i] | data[i + 1] << 8 | data[i + 2] << 16) >> (pos & 7)) & ((1 << n_bits) - 1)
        pos += n_bits
        if block_mode and code == 256 and prev:
            pos = origin = aligned(pos)
            n_bits, max_code = 9, 511
            table = table[:257]
            prev = b""
            continue
        if not prev:
            prev = table[code]
            out += prev
            continue
        if code < len(table):
            entry = table[code]
        elif code == len(table):
            entry = prev + prev[:1]
        else:
            raise ValueError(f"corrupt LZW stream: code {code} > next free code {len(table)}")
        out += entry
        if len(table) < limit:
            table.append(prev + entry[:1])
        prev = entry
    return bytes(out)


def read_brs_text(raw: bytes) -> str:
    """Text of a Bible Retrieval System data file (`/usr/lib/bible.data` in bible-kjv-text).

    Verified layout: the magic "EC02Compressed Data File", then at byte 0x54 two big-endian
    uint32 (window size, number of windows n), then n+1 big-endian uint32 offsets. Window k is an
    independent LZW stream (16-bit, block mode) from offsets[k] to offsets[k+1]; the first one is
    preceded by a normal `compress` header (1f 9d 90)."""
    if not raw.startswith(b"EC02"):
        raise ValueError("not a Bible Retrieval System data file (magic EC02 missing)")
    _window, n = struct.unpack(">II", raw[0x54:0x5C])
    offsets = struct.unpack(f">{n + 1}I", raw[0x5C:0x5C + 4 * (n + 1)])
    parts = [lzw_decompress(raw[offsets[k]:offsets[k + 1]]) for k in range(n)]
    return decode_text(b"".join(parts))


KJV_BOOKS = {
    "Ge": "Genesis", "Exo": "Exodus", "Lev": "Leviticus", "Num": "Numbers", "Deu": "Deuteronomy",
    "Josh": "Joshua", "Jdgs": "Judges", "Ruth": "Ruth", "1Sm": "1 Samuel", "2Sm": "2 Samuel",
    "1Ki": "1 Kings", "2Ki": "2 Kings", "1Chr": "1 Chronicles", "2Chr": "2 Chronicles",
    "Ezra": "Ezra", "Neh": "Nehemiah", "Est": "Esther", "Job": "Job", "Psa": "Psalms",
    "Prv": "Proverbs", "Eccl": "Ecclesiastes", "SSol": "Song of Solomon", "Isa": "Isaiah",
    "Jer": "Jeremiah", "Lam": "Lamentations", "Eze": "Ezekiel", "Dan": "Daniel", "Hos": "Hosea",
    "Joel": "Joel", "Amos": "Amos", "Obad": "Obadiah", "Jonah": "Jonah", "Mic": "Micah",
    "Nahum": "Nahum", "Hab": "Habakkuk", "Zep": "Zephaniah", "Hag": "Haggai", "Zec": "Zechariah",
    "Mal": "Malachi", "Mat": "Matthew", "Mark": "Mark", "Luke": "Luke", "John": "John",
    "Acts": "Acts", "Rom": "Romans", "1Cor": "1 Corinthians", "2Cor": "2 Corinthians",
    "Gal": "Galatians", "Eph": "Ephesians", "Phi": "Philippians", "Col": "Colossians",
    "1Th": "1 Thessalonians", "2Th": "2 Thessalonians", "1Tim": "1 Timothy", "2Tim": "2 Timothy",
    "Titus": "Titus", "Phmn": "Philemon", "Heb": "Hebrews", "Jas": "James", "1Pet": "1 Peter",
    "2Pet": "2 Peter", "1Jn": "1 John", "2Jn": "2 John", "3Jn": "3 John", "Jude": "Jude",
    "Rev": "Revelation",
}
_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+)\s+(.*)$")


def split_bible_chapters(text: str) -> list[str]:
    """One document per chapter from lines like "Ge1:1 In the beginning ...": a title line
    "Genesis 1" then "1 In the beginning ...". Lines that are not verses (the file's title) are
    dropped."""
    chapters: dict[tuple[str, str], list[str]] = {}
    for line in text.splitlines():
        m = _VERSE.match(line)
        if m:
            book, chapter, verse, words = m.groups()
            chapters.setdefault((book, chapter), []).append(f"{verse} {words.strip()}")
    return [f"{KJV_BOOKS.get(book, book)} {chapter}\n\n" + "\n".join(verses) + "\n"
            for (book, chapter), verses in chapters.items()]


# ------------------------------------------------------------------------------- domains


Roots = dict[str, Path]  # package name -> directory it was unpacked into


def _python_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [decode_text(p.read_bytes()) for pkg in packages
            for p in files_under(roots[pkg] / "usr" / "lib", (".py",))]


def _header_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [decode_text(p.read_bytes()) for pkg in packages
            for p in files_under(roots[pkg] / "usr" / "include", (".h",))]


def _legal_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    """Licence texts plus the debian/copyright file of every package the build downloaded."""
    docs = [decode_text(p.read_bytes()) for pkg in packages
            for p in files_under(roots[pkg] / "usr" / "share" / "common-licenses", ("",))]
    for pkg in sorted(roots):
        docs += [decode_text(p.read_bytes())
                 for p in files_under(roots[pkg] / "usr" / "share" / "doc", ("copyright",))]
    return docs


def _manual_docs(roots: Roots, packages: tuple[str, ...]) -> list[str]:
    return [roff_to_text(decode_text(read_maybe_gz(p))) for pkg in packages
            for p in files_under(roots[pkg] / "usr" / "share" / "man", (".gz",))]


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
    return [decode_text(read_maybe_gz(p)) for pkg in packages
            for p in files_under(roots[pkg] / "usr" / "share" / "doc", (".tex", ".tex.gz"))]


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
        DomainSpec("python_code", (f"libpython{python}-stdlib", f"libpython{python}-minimal"),
                   8 * MB, _python_docs, "Python standard library source (.py)"),
        DomainSpec("dictionary", ("dict-gcide",), 6 * MB, _dictionary_docs,
                   f"GCIDE (Webster 1913 + WordNet), {DICT_ENTRIES_PER_DOC} entries per document"),
        DomainSpec("c_headers", ("linux-libc-dev",), 4 * MB, _header_docs,
                   "Linux kernel UAPI C headers (.h)"),
        DomainSpec("manuals", ("manpages", "manpages-dev"), 3 * MB, _manual_docs,
                   "Linux man-pages, roff stripped to text"),
        DomainSpec("literature", ("bible-kjv-text",), 2 * MB, _literature_docs,
                   "King James Bible, one document per chapter"),
        DomainSpec("latex", ("texlive-science-doc",), 1 * MB, _latex_docs,
                   "LaTeX sources of TeX Live science package documentation (.tex)"),
        DomainSpec("legal", ("base-files",), 450_000, _legal_docs,
                   "/usr/share/common-licenses plus every downloaded package's copyright file"),
    ]


# ------------------------------------------------------------------------------- apt


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    sha256: str
    size: int
    path: Path


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusBuildError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    return proc.stdout


def require_tools(tools: Iterable[str] = ("apt-get", "apt-cache", "dpkg-deb")) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise CorpusBuildError(
            f"building the bundled corpus needs {', '.join(missing)} (a Debian/Ubuntu system); "
            "use corpus.source=tiny or local files (json/parquet/text/csv) instead"
        )


def has_candidate(package: str) -> bool:
    """True when apt knows a downloadable version of `package` (local apt cache only)."""
    proc = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    return bool(m) and m.group(1) != "(none)"


class AptLists:
    """Refreshes apt's package lists at most once per build, when a package turns out missing.

    `apt-get update` needs root; without it the build stops with the exact commands to run. The
    lists apt reads are wherever apt is configured to keep them (`APT_CONFIG`, `Dir::State::Lists`)."""

    def __init__(self) -> None:
        self.refreshed = False

    def refresh(self, why: str) -> None:
        if self.refreshed:
            return
        if os.geteuid() != 0:
            raise CorpusBuildError(
                f"{why}; apt's package lists are stale or missing and refreshing them needs root. "
                "Run `sudo apt-get update`, then `acodm corpus build` again"
            )
        log(f"{why}; refreshing apt's package lists (apt-get update) ...")
        proc = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        self.refreshed = True
        if proc.returncode != 0:
            raise CorpusBuildError(
                f"{why}, and `apt-get update` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-800:]}. Fix apt's sources (is the network reachable?), "
                "then run `acodm corpus build` again"
            )


def pick_python_version(
    candidates: tuple[str, ...] = ("3.11", "3.12", "3.13", "3.10"), apt: AptLists | None = None
) -> str:
    """The Python whose stdlib packages this apt can download (3.11 on Debian 12); refreshes the
    apt lists once (through `apt`) when none is found."""
    apt = apt or AptLists()
    for attempt in range(2):
        for version in candidates:
            if has_candidate(f"libpython{version}-stdlib"):
                return version
        if attempt == 0 and not apt.refreshed:
            apt.refresh(f"no libpython3.x-stdlib package is downloadable (tried {', '.join(candidates)})")
        else:
            break
    raise CorpusBuildError(
        f"no libpython3.x-stdlib package is downloadable (tried {', '.join(candidates)}), even after "
        "`apt-get update`; this release ships none of them: use corpus.source=tiny or local files"
    )


def host_release() -> str:
    """The Debian release whose apt sources the packages came from (for the manifest)."""
    path = Path("/etc/debian_version")
    return f"debian {path.read_text().strip()}" if path.exists() else "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_package(name: str, dest: Path, apt: AptLists | None = None) -> DebPackage:
    """`apt-get download name` into dest (no install), naming the package on failure. A missing
    candidate or a failed download refreshes the apt lists once (through `apt`) and retries."""
    apt = apt or AptLists()
    for attempt in range(2):
        before = set(dest.glob("*.deb"))
        proc = subprocess.run(["apt-get", "download", name], cwd=dest, capture_output=True, text=True)
        new = sorted(set(dest.glob("*.deb")) - before)
        if proc.returncode == 0 and new:
            break
        error = proc.stderr.strip()[-800:] or "no .deb"
        if attempt == 0 and not apt.refreshed:
            apt.refresh(f"could not download Debian package {name!r} ({error.splitlines()[-1]})")
            continue
        raise CorpusBuildError(
            f"could not download Debian package {name!r}: {error}"
            + (" (after `apt-get update`: is it available in this release?)" if apt.refreshed else "")
        )
    path = new[0]
    version = _run(["dpkg-deb", "-f", str(path), "Version"]).strip()
    return DebPackage(name, version, sha256_file(path), path.stat().st_size, path)


def unpack_package(deb: DebPackage, dest: Path) -> Path:
    root = dest / deb.name
    root.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb.path), str(root)])
    return root


# ------------------------------------------------------------------------------- sampling


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def clean_documents(docs: Iterable[str], max_chars: int = MAX_DOC_CHARS) -> list[str]:
    """Drop empty and duplicate documents, cut long ones: the shared post-processing of every
    domain (duplicates would leak between train and validation)."""
    seen: set[str] = set()
    out: list[str] = []
    for doc in docs:
        for piece in split_long_text(doc.strip("\n") + "\n", max_chars):
            key = hashlib.sha1(piece.encode("utf-8")).hexdigest()
            if piece.strip() and key not in seen:
                seen.add(key)
                out.append(piece)
    return out


def shuffle_and_cap(docs: list[str], budget_bytes: int, seed: str) -> list[str]:
    """Deterministic shuffle (seeded by build seed and domain), then the longest prefix that fits
    in the budget: the cap samples the whole domain instead of its first files."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    kept: list[str] = []
    total = 0
    for doc in docs:
        size = utf8_len(doc)
        if total + size > budget_bytes:
            break
        kept.append(doc)
        total += size
    return kept


def split_train_validation(
    docs: list[str], fraction: float = VALIDATION_FRACTION, max_bytes: int = MAX_VALIDATION_BYTES
) -> tuple[list[str], list[str]]:
    """Leading (already shuffled) documents to validation until they hold ~fraction of the
    domain's bytes, capped at max_bytes; at least one document, never all of them. Counting bytes
    rather than documents keeps small domains with a few long files (legal) from ending up with
    a validation set of a few hundred tokens."""
    if len(docs) < 2:
        raise CorpusBuildError(f"need at least 2 documents to split, got {len(docs)}")
    target = min(max_bytes, fraction * sum(utf8_len(d) for d in docs))
    val: list[str] = []
    size = 0
    for doc in docs[:-1]:
        if size >= target or (val and size + utf8_len(doc) > max_bytes):
            break
        val.append(doc)
        size += utf8_len(doc)
    return docs[len(val):], val


def write_jsonl(path: Path, rows: Iterable[dict[str, str]]) -> None:
    """One JSON object per line; .gz paths are gzip'd with a zero timestamp so a rebuild gives
    identical bytes (the tiny slice is git-tracked)."""
    with open(path, "wb") as raw:
        with (gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
              if path.name.endswith(".gz") else raw) as f:
            for row in rows:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def read_jsonl(path: Path) -> Iterator[dict[str, str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def split_stats(docs: list[str]) -> dict[str, int]:
    return {"bytes": sum(utf8_len(d) for d in docs), "docs": len(docs)}


def write_corpus(out: Path, train: dict[str, list[str]], validation: dict[str, list[str]],
                 manifest: dict, gz: bool = False) -> None:
    """train/validation jsonl (grouped by domain, domain order kept) and manifest.json."""
    ext = ".jsonl.gz" if gz else ".jsonl"
    for split, data in (("train", train), ("validation", validation)):
        write_jsonl(out / f"{split}{ext}",
                    ({"text": t, "domain": d} for d, docs in data.items() for t in docs))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def publish_atomically(tmp: Path, out_dir: Path) -> None:
    """Move a finished build into place; a reader sees either nothing or a complete corpus."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------- the build


def select_domains(specs: list[DomainSpec], domains: Iterable[str] | None) -> list[DomainSpec]:
    """The specs named in `domains` (all when None), refusing unknown names."""
    if domains is None:
        return specs
    wanted = list(domains)
    known = [s.name for s in specs]
    unknown = [d for d in wanted if d not in known]
    if unknown or not wanted:
        raise CorpusBuildError(f"unknown corpus domain(s) {unknown or wanted}; the domains are {known}")
    return [s for s in specs if s.name in wanted]


def build_bundled_corpus(
    out_dir: Path | None = None, force: bool = False, domains: Iterable[str] | None = None
) -> Path:
    """Download the Debian packages, extract seven domains, write the corpus; return its dir.

    Idempotent (an existing manifest means done unless force) and atomic (built in a sibling temp
    dir, renamed into place at the end). `domains` builds only those (a partial corpus, for tests
    and quick checks); it needs an explicit `out_dir`, so the default corpus is always complete."""
    if domains is not None and out_dir is None:
        raise CorpusBuildError("a partial corpus (--domains) needs an explicit output directory (--out)")
    out_dir = Path(out_dir) if out_dir is not None else default_corpus_dir()
    if (out_dir / "manifest.json").exists() and not force:
        log(f"already built: {out_dir}")
        return out_dir
    require_tools()
    start = time.time()
    apt = AptLists()
    wanted = None if domains is None else list(domains)
    needs_python = wanted is None or "python_code" in wanted
    specs = select_domains(domain_specs(pick_python_version(apt=apt) if needs_python else "3.11"), wanted)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    tmp_out.chmod(0o755)  # mkdtemp makes it private; the corpus is shared data
    try:
        with tempfile.TemporaryDirectory(prefix="acodm-debs-") as work:
            manifest = _build_into(tmp_out, Path(work), specs, apt)
        manifest["build_seconds"] = round(time.time() - start, 1)
        (tmp_out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if (out_dir / "manifest.json").exists() and not force:
            log("another build finished first; keeping it")
            shutil.rmtree(tmp_out, ignore_errors=True)
        else:
            publish_atomically(tmp_out, out_dir)
    except BaseException:
        shutil.rmtree(tmp_out, ignore_errors=True)
        raise
    log(f"done in {time.time() - start:.0f}s: {out_dir}")
    return out_dir


def _build_into(out: Path, work: Path, specs: list[DomainSpec], apt: AptLists | None = None) -> dict:
    debs_dir, roots_dir = work / "debs", work / "roots"
    debs_dir.mkdir()
    names = sorted({p for s in specs for p in s.packages})
    debs: dict[str, DebPackage] = {}
    roots: Roots = {}
    for name in names:
        log(f"downloading {name} ...")
        deb = download_package(name, debs_dir, apt)
        log(f"  {deb.name} {deb.version}: {deb.size / MB:.1f} MB; unpacking")
        debs[name] = deb
        roots[name] = unpack_package(deb, roots_dir)
    train: dict[str, list[str]] = {}
    validation: dict[str, list[str]] = {}
    domains: dict[str, dict] = {}
    for spec in specs:
        docs = clean_documents(spec.extract(roots, spec.packages))
        available = split_stats(docs)
        if available["docs"] < 2:
            raise CorpusBuildError(
                f"domain {spec.name!r} got {available['docs']} documents from {spec.packages}"
            )
        kept = shuffle_and_cap(docs, spec.budget_bytes, f"{BUILD_SEED}:{spec.name}")
        train[spec.name], validation[spec.name] = split_train_validation(kept)
        domains[spec.name] = {
            "description": spec.description,
            "packages": list(spec.packages),
            "budget_bytes": spec.budget_bytes,
            "available": available,
            "train": split_stats(train[spec.name]),
            "validation": split_stats(validation[spec.name]),
        }
        log(f"{spec.name}: {available['bytes'] / MB:.2f} MB available in {available['docs']} docs;"
            f" kept {domains[spec.name]['train']['bytes'] / MB:.2f} MB train"
            f" ({domains[spec.name]['train']['docs']} docs),"
            f" {domains[spec.name]['validation']['bytes'] / 1000:.0f} KB validation")
    manifest = {
        "name": CORPUS_NAME,
        "format_version": FORMAT_VERSION,
        "seed": BUILD_SEED,
        "built_by": "acodm_ray.data.build.build_bundled_corpus",
        "max_doc_chars": MAX_DOC_CHARS,
        "validation_fraction": VALIDATION_FRACTION,
        "max_validation_bytes": MAX_VALIDATION_BYTES,
        "apt_host": host_release(),
        "apt_lists_refreshed": bool(apt and apt.refreshed),
        "domains": domains,
        "packages": [{"name": d.name, "version": d.version, "sha256": d.sha256, "size": d.size,
                      "file": d.path.name} for d in debs.values()],
    }
    write_corpus(out, train, validation, manifest)
    return manifest


# ------------------------------------------------------------------------------- the tiny slice


def read_corpus_dir(src_dir: Path) -> tuple[dict[str, list[str]], dict[str, list[str]], dict]:
    """(train, validation, manifest) of a built corpus dir, domains in file order."""
    src_dir = Path(src_dir)
    splits: list[dict[str, list[str]]] = []
    for split in ("train", "validation"):
        path = next((p for p in (src_dir / f"{split}.jsonl", src_dir / f"{split}.jsonl.gz")
                     if p.exists()), None)
        if path is None:
            raise FileNotFoundError(f"{src_dir} has no {split}.jsonl(.gz)")
        data: dict[str, list[str]] = {}
        for row in read_jsonl(path):
            data.setdefault(row["domain"], []).append(row["text"])
        splits.append(data)
    manifest = json.loads((src_dir / "manifest.json").read_text())
    return splits[0], splits[1], manifest


def prefix_lines(doc: str, max_bytes: int) -> str:
    """The longest run of whole leading lines of `doc` within max_bytes."""
    kept: list[str] = []
    total = 0
    for line in doc.splitlines(keepends=True):
        total += utf8_len(line)
        if total > max_bytes:
            break
        kept.append(line)
    return "".join(kept)


def take_budget(docs: list[str], budget_bytes: int, min_piece_bytes: int = 1_000) -> list[str]:
    """Documents in order while they fit the budget; a document that does not fit contributes
    its leading lines when at least min_piece_bytes of budget are left, so small budgets are
    really filled (and every domain keeps some text)."""
    kept: list[str] = []
    total = 0
    for doc in docs:
        left = budget_bytes - total
        if left < min_piece_bytes:
            break
        piece = doc if utf8_len(doc) <= left else prefix_lines(doc, left)
        if piece.strip():
            kept.append(piece)
            total += utf8_len(piece)
    return kept


def tiny_train_budget(full_bytes: int, largest_bytes: int, max_bytes: int, min_bytes: int) -> int:
    """Square-root compression of the skew: the largest domain gets max_bytes, a domain 16x
    smaller gets max_bytes / 4, and nothing gets less than min_bytes."""
    return max(min_bytes, int(max_bytes * math.sqrt(full_bytes / largest_bytes)))


def make_tiny_slice(
    src_dir: Path,
    dst_dir: Path = TINY_DIR,
    max_train_bytes: int = 120_000,
    min_train_bytes: int = 30_000,
    validation_bytes: int = 8_000,
) -> Path:
    """Cut the small slice shipped in the package from a full build (gzip'd jsonl, deterministic
    bytes). Keeps the ordering of the skew (square-root compressed) and records how it was made."""
    train, validation, src_manifest = read_corpus_dir(Path(src_dir))
    full = {d: sum(utf8_len(t) for t in docs) for d, docs in train.items()}
    largest = max(full.values())
    tiny_train = {d: take_budget(docs, tiny_train_budget(full[d], largest, max_train_bytes,
                                                          min_train_bytes))
                  for d, docs in train.items()}
    tiny_val = {d: take_budget(validation[d], validation_bytes) for d in train}
    manifest = {
        "name": "tiny",
        "format_version": FORMAT_VERSION,
        "made_by": "acodm_ray.data.build.make_tiny_slice",
        "how": (
            "Cut from the bundled corpus built by build_bundled_corpus (see source below). Train: "
            "per domain, the build's documents in its shuffled order within a byte budget of "
            f"max({min_train_bytes}, {max_train_bytes} * sqrt(domain_bytes / largest_domain_bytes))"
            f"; validation: {validation_bytes} bytes of the build's validation documents. A document "
            "that does not fit the rest of a budget contributes its leading lines (cut at a line "
            "boundary) when at least 1000 bytes are left."
        ),
        "params": {"max_train_bytes": max_train_bytes, "min_train_bytes": min_train_bytes,
                   "validation_bytes": validation_bytes},
        "source": {k: src_manifest.get(k) for k in ("name", "format_version", "seed", "packages")},
        "domains": {d: {"description": src_manifest.get("domains", {}).get(d, {}).get("description"),
                        "train": split_stats(tiny_train[d]), "validation": split_stats(tiny_val[d])}
                    for d in train},
    }
    dst_dir = Path(dst_dir)
    dst_dir.mkdir(parents=True, exist_ok=True)
    write_corpus(dst_dir, tiny_train, tiny_val, manifest, gz=True)
    return dst_dir


def main(argv: list[str] | None = None) -> None:
    """`python -m acodm_ray.data.build [--force] [--out DIR] [--tiny-from DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--tiny-from", type=Path, default=None,
                        help="cut the shipped tiny slice from this built corpus dir")
    args = parser.parse_args(argv)
    if args.tiny_from is not None:
        print(make_tiny_slice(args.tiny_from, args.out or TINY_DIR))
    else:
        print(build_bundled_corpus(args.out, force=args.force))


if __name__ == "__main__":
    main()
