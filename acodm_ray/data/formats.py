"""The text formats of the bundled corpus's Debian sources, as pure functions tested on inline samples
(tests/test_corpus.py): byte decoding and long-text splitting, roff (man pages) to plain text, dictd
databases (GCIDE) to entries, the KJV's LZW-compressed `.brs` files to chapters."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

MAX_DOC_CHARS = 32_000  # longer files are cut at line boundaries so one file cannot eat a budget
DICT_ENTRIES_PER_DOC = 40


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
        p
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.name.endswith(suffixes)
    )


def read_maybe_gz(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


# ------------------------------------------------------------------------------- roff (manuals)

_ROFF_CHARS = {
    "em": "--",
    "en": "-",
    "hy": "-",
    "mi": "-",
    "aq": "'",
    "dq": '"',
    "lq": '"',
    "rq": '"',
    "oq": "'",
    "cq": "'",
    "bu": "*",
    "co": "(c)",
    "rg": "(R)",
    "tm": "(TM)",
    "de": " degrees",
    "mu": "x",
    "<=": "<=",
    ">=": ">=",
    "!=": "!=",
    "->": "->",
    "<-": "<-",
    "ti": "~",
    "ha": "^",
    "rs": "\\",
    "ba": "|",
    "or": "|",
    "sl": "/",
    "pl": "+",
    "eq": "=",
    "ga": "`",
    "aa": "'",
    "at": "@",
    "sh": "#",
    "Do": "$",
    "lB": "[",
    "rB": "]",
    "lC": "{",
    "rC": "}",
    "ua": "^",
    "da": "v",
    "rA": "=>",
    "lA": "<=",
    "pc": ".",
    "ss": "ss",
    "+-": "+-",
    "12": "1/2",
}
_ROFF_STRINGS = {"lq": '"', "rq": '"', "R": "(R)", "Tm": "(TM)"}
_ROFF_SINGLE = {
    "-": "-",
    "e": "\\",
    "\\": "\\",
    " ": " ",
    "~": " ",
    "0": " ",
    "t": "\t",
    ".": ".",
    "'": "'",
    "`": "`",
}
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
    return [
        q.replace('""', '"') if p is None else p
        for q, p in ((m.group(1), m.group(2)) for m in _ROFF_ARG.finditer(rest))
    ]


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


def split_dictd(
    dict_data: bytes, index_text: str, entries_per_doc: int = DICT_ENTRIES_PER_DOC
) -> list[str]:
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
    entries = [decode_text(dict_data[o : o + n]).strip() for o, n in sorted(spans)]
    entries = [e for e in entries if e]
    return [
        "\n\n".join(entries[i : i + entries_per_doc]) + "\n"
        for i in range(0, len(entries), entries_per_doc)
    ]


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
    offsets = struct.unpack(f">{n + 1}I", raw[0x5C : 0x5C + 4 * (n + 1)])
    parts = [lzw_decompress(raw[offsets[k] : offsets[k + 1]]) for k in range(n)]
    return decode_text(b"".join(parts))


KJV_BOOKS = {
    "Ge": "Genesis",
    "Exo": "Exodus",
    "Lev": "Leviticus",
    "Num": "Numbers",
    "Deu": "Deuteronomy",
    "Josh": "Joshua",
    "Jdgs": "Judges",
    "Ruth": "Ruth",
    "1Sm": "1 Samuel",
    "2Sm": "2 Samuel",
    "1Ki": "1 Kings",
    "2Ki": "2 Kings",
    "1Chr": "1 Chronicles",
    "2Chr": "2 Chronicles",
    "Ezra": "Ezra",
    "Neh": "Nehemiah",
    "Est": "Esther",
    "Job": "Job",
    "Psa": "Psalms",
    "Prv": "Proverbs",
    "Eccl": "Ecclesiastes",
    "SSol": "Song of Solomon",
    "Isa": "Isaiah",
    "Jer": "Jeremiah",
    "Lam": "Lamentations",
    "Eze": "Ezekiel",
    "Dan": "Daniel",
    "Hos": "Hosea",
    "Joel": "Joel",
    "Amos": "Amos",
    "Obad": "Obadiah",
    "Jonah": "Jonah",
    "Mic": "Micah",
    "Nahum": "Nahum",
    "Hab": "Habakkuk",
    "Zep": "Zephaniah",
    "Hag": "Haggai",
    "Zec": "Zechariah",
    "Mal": "Malachi",
    "Mat": "Matthew",
    "Mark": "Mark",
    "Luke": "Luke",
    "John": "John",
    "Acts": "Acts",
    "Rom": "Romans",
    "1Cor": "1 Corinthians",
    "2Cor": "2 Corinthians",
    "Gal": "Galatians",
    "Eph": "Ephesians",
    "Phi": "Philippians",
    "Col": "Colossians",
    "1Th": "1 Thessalonians",
    "2Th": "2 Thessalonians",
    "1Tim": "1 Timothy",
    "2Tim": "2 Timothy",
    "Titus": "Titus",
    "Phmn": "Philemon",
    "Heb": "Hebrews",
    "Jas": "James",
    "1Pet": "1 Peter",
    "2Pet": "2 Peter",
    "1Jn": "1 John",
    "2Jn": "2 John",
    "3Jn": "3 John",
    "Jude": "Jude",
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
    return [
        f"{KJV_BOOKS.get(book, book)} {chapter}\n\n" + "\n".join(verses) + "\n"
        for (book, chapter), verses in chapters.items()
    ]
