"""The shipped tiny slice, and the bundled-corpus builder's pure text functions (reading any corpus
into token shards is tests/test_prepare.py)."""

from __future__ import annotations

import base64
import gzip
import json
import struct

import pytest

from acodm_ray.data import apt, build, formats, tiny_slice


@pytest.fixture(scope="module")
def tiny() -> dict[str, dict[str, list[str]]]:
    """split -> domain -> documents of the shipped slice, read as plain JSON lines."""
    out: dict[str, dict[str, list[str]]] = {}
    for split in ("train", "validation"):
        with gzip.open(build.TINY_DIR / f"{split}.jsonl.gz", "rt") as f:
            for line in f:
                row = json.loads(line)
                out.setdefault(split, {}).setdefault(row["domain"], []).append(row["text"])
    return out


# ------------------------------------------------------------------------------- the tiny slice


def test_tiny_slice_has_skewed_domains_and_both_splits(tiny):
    train, validation = tiny["train"], tiny["validation"]
    assert len(train) >= 6 and set(train) == set(validation)
    sizes = {d: sum(map(len, train[d])) for d in train}
    for d in train:
        assert train[d] and validation[d], d
        assert all(isinstance(t, str) and t.strip() for t in train[d] + validation[d])
        assert sum(map(len, validation[d])) > 1_000
    assert max(sizes.values()) >= 3 * min(sizes.values())  # natural proportions are skewed
    assert min(sizes.values()) > 20_000  # enough for a few steps of a 64-token model


def test_tiny_slice_is_small_and_documented():
    files = list(build.TINY_DIR.iterdir())
    assert sum(f.stat().st_size for f in files) < 1_500_000
    manifest = json.loads((build.TINY_DIR / "manifest.json").read_text())
    assert manifest["made_by"].endswith("make_tiny_slice") and manifest["how"]
    assert all(p["sha256"] and p["version"] for p in manifest["source"]["packages"])


# ------------------------------------------------------------------------------- bad input


# ------------------------------------------------------------------------------- builder functions


ROFF = r""".\" Copyright comment that must vanish
.TH OPEN 2 2023-02-05 "Linux man-pages 6.03"
.SH NAME
open \- open a file
.SH DESCRIPTION
The
.BR open ()
system call opens
.IR pathname ,
see \fBclose\fP(2) and \(lqquotes\(rq.
.PP
.TP
.B O_CREAT
Create it \e if needed.
.nf
    int fd = open(path, flags);
.fi
.de XX
ignored macro body
..
"""


def test_roff_to_text():
    text = formats.roff_to_text(ROFF)
    assert text.splitlines()[0] == "OPEN(2)"
    assert "Copyright" not in text and "ignored" not in text
    assert "open - open a file" in text
    assert 'The open() system call opens pathname, see close(2) and "quotes".' in text
    assert "\nO_CREAT\nCreate it \\ if needed." in text
    assert "\n    int fd = open(path, flags);" in text
    assert "\\f" not in text and "\\(" not in text and ".TP" not in text
    assert formats.roff_to_text(".so man2/open.2\n") == ""


def test_split_dictd():
    entries = [
        b'Apple \\Ap"ple\\, n.\n   A fruit.\n',
        b"Bee \\Bee\\, n.\n   An insect.\n",
        b"Cat \\Cat\\, n.\n   A pet.\n",
    ]
    data = b"".join(entries)
    offsets = [0, len(entries[0]), len(entries[0]) + len(entries[1])]

    def b64(n: int) -> str:
        digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        out = ""
        while True:
            out = digits[n % 64] + out
            n //= 64
            if not n:
                return out

    index = "\n".join(
        [f"00-database-info\t{b64(0)}\t{b64(5)}"]
        + [f"{w}\t{b64(o)}\t{b64(len(e))}" for w, o, e in zip("ABC", offsets, entries)]
        + [f"Pomme\t{b64(0)}\t{b64(len(entries[0]))}"]
    )  # second headword, same entry
    assert formats.dictd_number("BA") == 64
    docs = formats.split_dictd(data, index, entries_per_doc=2)
    assert len(docs) == 2
    assert docs[0].startswith("Apple") and "\n\nBee" in docs[0] and docs[1].startswith("Cat")


KJV = """Holy Bible, Authorized (King James) Version.  Textfile 930105.
Ge1:1 In the beginning God created the heaven and the earth.
Ge1:2 And the earth was without form, and void.
Ge2:1 Thus the heavens and the earth were finished.
1Jn1:1 That which was from the beginning.
"""


def test_split_bible_chapters():
    docs = formats.split_bible_chapters(KJV)
    assert [d.splitlines()[0] for d in docs] == ["Genesis 1", "Genesis 2", "1 John 1"]
    assert docs[0] == (
        "Genesis 1\n\n1 In the beginning God created the heaven and the earth.\n"
        "2 And the earth was without form, and void.\n"
    )


# made with ncompress 4.2.4.6 (`compress -b 16`) from SAMPLE_TEXT; gzip -d agrees
SAMPLE_TEXT = " ".join(str(i * i % 997) for i in range(700)) + "\n"
SAMPLE_Z = base64.b64decode(
    "H52QMEDEAEEDRA6BNkDIqAFiRkIaB20UxDEwBoyAMWRUpFEwho2DMXIklLFQYY2ROA7OkFHQ4UAaFwnSeImjYA0ZB2vc"
    "SGijpI2dIG7gDFoTRM2BOWKKHCjjhkEZAmscJIlDYQ6VQmU6vVnQBowZIGwU3ekUx02DM1RWJKkwBsMZFgnC2AqD59yg"
    "cSkyzMF2RkcaDBdWnXEDLMSAXg8WDmgWbI4bVS1WlUG4oVgQNWAMtOEwaGGDGTEnDKmSI8Ecm2EGRW3QtEWoCw/OrKpT"
    "MQ2oSZ3ecMryYYytSYPa2HtbIMuGMBjSwFH1J1gcXjHDpmG4M+eBOGQMDkj5pd+waY3SSFhj8keC2cM+Bt2x8wydmHEw"
    "Tt4wsMTTDIVWFQlWxleZUInlmAyj3VDQbZvdEBBfFe1G0EphpdTaZKHRcEN+qsXVVE6ZGUWZQJo1BFlY8OUww2THZaaY"
    "SEYNdkNEWYnE20+iJQSdU78ZNiJkezkFU1VCDRTeezxdaBCLKwVooUEGIsdTZY8FNAMMzQFmUFErNXdDRSrZkNCWDJ13"
    "G1S74VgZRDbCRxJY5e1Xw1tNqQfkgRB5OBKV8R30GFQOBWSgmTlN+RRYKw20ZWT+SYfUcTNAWBhINQx0Em5GpvWchhAO"
    "B9aLmMFQkIlCcrZaQZQhNhyIDNVgWg5mPYgdUCt9aSRJEaUXg2pSASfdgjgYFilogwUHnZCVUQQbX54x9WZQJypEIF79"
    "0ffRaMiKhSMOTolFLWImKhSigij6CZdCS+4EW3ryCVlSTS4mlFR1e3nZKVS4OhhDSGFF59+Xv06JXYcwfQpfpPmF+V1I"
    "QNqg7kEpPXRZcQozFNKmCtaHW6OY4WtRtjmQCp1RDlq46WaXNcXYlgQ52OpHfHoKWqrj3qqYvCciCp59zwV3E1RufSnh"
    "bdnqVld9C3YrEVOsdRyQVKR2mFSqp5JUFnOYqeosVMzlpLBC7xmEZ3kjydtxmEPB9ZZ6UqYH1E6y0ehRWfLqxB1QrG7G"
    "Gkxg3VuWoKqatx+2eHmH46kpBchoea15qLVakubHKmbjWfUQkFdV/VYMmz4HoVQJOcSzoCllKyZ1benZsWc2ndRQhs+i"
    "ZmiIEPUHeK8ga1nVctwVJWwO+dEXqVONbuSUSGSm59WB2pk0EW4w2CapkTMxVaeEfAGZlcK30+wRQiiCnB/GUvl6OUit"
    "1jCgn9XGXdxtUsYUg/HuTl+ZUNniG6lhzSPH210WgeTY9tkpSGG6ErmTBMRCnTsdXEjVGY8wZjSfmgnInnMXA4FFLJvR"
    "iGjYdBfA4E9I/frPQniDOYGgDHNIYRNvHEM13u1HUEmZiHyMgrheVSU78xFgcHaTsIT5yWoX8tNygjLEIAYFiNHZifUo"
    "l0MPMaZZZrnhDGOIlgUhjlWTUSFaBBIzlGmkP/CZEqF+BZOXmK9TWxFVTzZDESJSsCyf6dhGjDIafbnnVg05HQJFg5jI"
    "DdBDn9peCfvnLeB1MH/3Cwu+6GcUKNVJXu9r2QETpaoAyetFuKFk3loFF9ksK3zMes6seHYZuDiMJ+/zTCZvOJU6RQ8z"
    "RjIQUvKXnoUgrzkugwxueiKQJQUvY0JjSEr2krsDzfAnNxwR7bTjo24pCCn3Mk7ncKW63XzqdBqRDem8xLD1YE5KvORc"
    "I8lEqBK+yXGymQyLVPWlxy0LLpI6T3b01BLE9WQiyPKIcuYXTVbNiDZD7BVGfiOXCyatjU0hT8WgU0cf0YhtwmmI8YJT"
    "TrLR0z7k+VhSsgg17EiIJFB5kwxRlEZiBqZDTGsNd1hztCON0U9DoxHQiAIp8rAlJdxRY9dCUzPhQDBQ0HyLy1hGw5TB"
    "kSkV8xKQYqAA"
)


def test_lzw_decompress_matches_compress():
    assert SAMPLE_Z[:3] == b"\x1f\x9d\x90"  # 16 bits, block mode
    assert formats.lzw_decompress(SAMPLE_Z[3:]) == SAMPLE_TEXT.encode()  # code width grows 9->11


def test_read_brs_text_windows():
    """Two independent LZW windows behind the EC02 header, the first after a compress header."""
    body = SAMPLE_Z[3:]
    first = 0x5C + 4 * 3 + 3
    header = b"EC02Compressed Data File".ljust(0x54, b"\0") + struct.pack(">II", 65536, 2)
    offsets = struct.pack(">3I", first, first + len(body), first + 2 * len(body))
    raw = header + offsets + SAMPLE_Z[:3] + body + body
    assert formats.read_brs_text(raw) == SAMPLE_TEXT * 2
    with pytest.raises(ValueError, match="EC02"):
        formats.read_brs_text(b"nope" * 40)


def test_sampling_helpers():
    docs = [f"doc {i}\n" * (i + 1) for i in range(40)]
    kept = build.shuffle_and_cap(docs, 2_000, "0:x")
    assert kept == build.shuffle_and_cap(docs, 2_000, "0:x") and kept != docs[: len(kept)]
    assert sum(map(build.utf8_len, kept)) <= 2_000
    train, val = build.split_train_validation(kept, fraction=0.1, max_bytes=150)
    assert val and train and train + val != kept and set(train).isdisjoint(val)
    assert sum(map(build.utf8_len, val)) <= max(150, build.utf8_len(val[0]))
    pieces = formats.split_long_text("abc\n" * 100, max_chars=40)
    assert "".join(pieces) == "abc\n" * 100 and all(len(p) <= 40 for p in pieces)
    assert build.clean_documents(["x\n", "x\n", "  \n", "y"]) == ["x\n", "y\n"]
    assert tiny_slice.take_budget(["a" * 50 + "\n", "b\n" * 100], 120, min_piece_bytes=10) == [
        "a" * 50 + "\n",
        "b\n" * 34,
    ]


def test_make_tiny_slice_roundtrip(tmp_path):
    src = tmp_path / "full"
    src.mkdir()
    train = {
        "big": [f"big {i}\n" * 50 for i in range(40)],
        "small": [f"s {i}\n" * 50 for i in range(4)],
    }
    val = {"big": ["vb\n" * 10], "small": ["vs\n" * 10]}
    build.write_corpus(
        src, train, val, {"name": "x", "domains": {"big": {}, "small": {}}, "packages": []}
    )
    out = tiny_slice.make_tiny_slice(
        src, tmp_path / "tiny", max_train_bytes=4_000, min_train_bytes=1_000, validation_bytes=1_000
    )
    t, v, manifest = tiny_slice.read_corpus_dir(out)
    assert list(t) == ["big", "small"] and v["small"] == ["vs\n" * 10]
    sizes = {d: manifest["domains"][d]["train"]["bytes"] for d in t}
    assert 3_000 < sizes["big"] <= 4_000 and sizes["small"] <= 1_500


def test_build_requires_apt(monkeypatch, tmp_path):
    monkeypatch.setattr(build.shutil, "which", lambda tool: None)
    with pytest.raises(build.CorpusBuildError, match="apt-get"):
        build.build_bundled_corpus(tmp_path / "c")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "manifest.json").write_text("{}")
    assert build.build_bundled_corpus(tmp_path / "done") == tmp_path / "done"  # idempotent


@pytest.mark.skipif(build.shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_download_failure_names_the_package(tmp_path):
    with pytest.raises(build.CorpusBuildError, match="'no-such-package-acodm'"):
        apt.download_package("no-such-package-acodm", tmp_path)
