"""Corpus loading (every source and every bad input) and the builder's pure text functions."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import pytest

from acodm_ray.config import CorpusConfig
from acodm_ray.data import apt, build, formats, tiny_slice
from acodm_ray.data.corpus import (
    CorpusError,
    CorpusFileNotFoundError,
    CorpusNotBuiltError,
    DuplicateDomainError,
    EmptyDomainError,
    MissingColumnError,
    TextCorpus,
    UnknownDomainError,
    UnknownSourceError,
    load_text_corpus,
)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ACODM_HOME for this test only."""
    monkeypatch.setenv("ACODM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> TextCorpus:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACODM_HOME", str(tmp_path_factory.mktemp("tiny_home")))
        return load_text_corpus(CorpusConfig(source="tiny"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pile_rows(domains: dict[str, int]) -> list[dict]:
    """Rows shaped like The Pile's: the domain sits in a nested field."""
    return [
        {"text": f"{d} document {i} " * 5, "meta": {"pile_set_name": d}}
        for d, n in domains.items()
        for i in range(n)
    ]


# ------------------------------------------------------------------------------- the tiny slice


def test_tiny_slice_has_skewed_domains_and_both_splits(tiny):
    assert len(tiny.domains) >= 6
    sizes = {d: sum(map(len, tiny.train[d])) for d in tiny.domains}
    for d in tiny.domains:
        assert tiny.train[d] and tiny.validation[d], d
        assert all(isinstance(t, str) and t.strip() for t in tiny.train[d] + tiny.validation[d])
        assert sum(map(len, tiny.validation[d])) > 1_000
    assert max(sizes.values()) >= 3 * min(sizes.values())  # natural proportions are skewed
    assert min(sizes.values()) > 20_000  # enough for a few steps of a 64-token model


def test_tiny_slice_is_small_and_documented():
    files = list(build.TINY_DIR.iterdir())
    assert sum(f.stat().st_size for f in files) < 1_500_000
    manifest = json.loads((build.TINY_DIR / "manifest.json").read_text())
    assert manifest["made_by"].endswith("make_tiny_slice") and manifest["how"]
    assert all(p["sha256"] and p["version"] for p in manifest["source"]["packages"])


def test_fingerprint_is_stable_and_content_sensitive(tiny):
    again = TextCorpus(list(tiny.domains), dict(tiny.train), dict(tiny.validation))
    assert again.fingerprint() == tiny.fingerprint()
    d = tiny.domains[0]
    changed = TextCorpus(list(tiny.domains), {**tiny.train, d: tiny.train[d][:-1]}, tiny.validation)
    assert changed.fingerprint() != tiny.fingerprint()


def test_domains_restrict_and_order(tiny, home):
    pick = [tiny.domains[2], tiny.domains[0]]
    c = load_text_corpus(CorpusConfig(source="tiny", domains=pick, max_docs_per_domain=1))
    assert c.domains == pick
    assert all(len(c.train[d]) == 1 and len(c.validation[d]) == 1 for d in pick)


# ------------------------------------------------------------------------------- file sources


def test_column_mode_nested_dotted_column(tmp_path, home):
    train = write_jsonl(tmp_path / "train.jsonl", pile_rows({"Pile-CC": 20, "FreeLaw": 10}))
    cfg = CorpusConfig(
        source="json",
        data_files={"train": [str(train)]},
        domain_column="meta.pile_set_name",
        validation_fraction=0.1,
    )
    c = load_text_corpus(cfg)
    assert c.domains == ["FreeLaw", "Pile-CC"]  # sorted
    assert (len(c.train["Pile-CC"]), len(c.validation["Pile-CC"])) == (18, 2)
    assert (len(c.train["FreeLaw"]), len(c.validation["FreeLaw"])) == (9, 1)
    assert not set(c.train["Pile-CC"]) & set(c.validation["Pile-CC"])
    assert load_text_corpus(cfg).validation == c.validation  # deterministic split


def test_column_mode_with_validation_file(tmp_path, home):
    train = write_jsonl(tmp_path / "t.jsonl", pile_rows({"a": 3, "b": 3}))
    val = write_jsonl(tmp_path / "v.jsonl", pile_rows({"a": 1, "b": 2}))
    c = load_text_corpus(
        CorpusConfig(
            source="json",
            domain_column="meta.pile_set_name",
            data_files={"train": [str(train)], "validation": [str(val)]},
        )
    )
    assert [len(c.train[d]) for d in c.domains] == [3, 3]
    assert [len(c.validation[d]) for d in c.domains] == [1, 2]


def test_parquet_column_mode(tmp_path, home):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"content": [f"text number {i}" for i in range(12)], "source": ["x", "y", "z"] * 4}
    pq.write_table(pa.table(rows), tmp_path / "data.parquet")
    c = load_text_corpus(
        CorpusConfig(
            source="parquet",
            data_files={"train": [str(tmp_path / "*.parquet")]},
            text_column="content",
            domain_column="source",
            validation_fraction=0.25,
        )
    )
    assert c.domains == ["x", "y", "z"]
    assert all(len(c.train[d]) == 3 and len(c.validation[d]) == 1 for d in c.domains)


def test_domain_files_mode_text_and_json(tmp_path, home):
    for i in range(4):
        (tmp_path / f"law{i}.txt").write_text(f"Section {i}.\nThe party of the first part.\n")
    code = write_jsonl(tmp_path / "code.jsonl", [{"text": f"def f{i}(): pass"} for i in range(10)])
    c = load_text_corpus(
        CorpusConfig(
            source="text",
            domain_files={"law": [str(tmp_path / "law*.txt")]},
            validation_fraction=0.25,
        )
    )
    assert c.domains == ["law"]
    assert len(c.train["law"]) == 3 and len(c.validation["law"]) == 1
    assert all(doc.count("\n") == 2 for doc in c.train["law"])  # one file = one document
    c = load_text_corpus(
        CorpusConfig(
            source="json",
            domain_files={"code": [str(code)], "more_code": [str(code)]},
            validation_fraction=0.2,
        )
    )
    assert c.domains == ["code", "more_code"]  # the order of domain_files
    assert len(c.train["code"]) == 8 and len(c.validation["code"]) == 2


# ------------------------------------------------------------------------------- bad input


def test_unknown_source():
    with pytest.raises(UnknownSourceError, match="'pile'.*bundled"):
        load_text_corpus(CorpusConfig(source="pile"))


def test_missing_file_is_named(tmp_path, home):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CorpusFileNotFoundError, match="nope.jsonl"):
        load_text_corpus(CorpusConfig(source="json", data_files={"train": [str(missing)]}))
    with pytest.raises(CorpusFileNotFoundError, match=r"nope\*.txt"):
        load_text_corpus(
            CorpusConfig(source="text", domain_files={"a": [str(tmp_path / "nope*.txt")]})
        )


def test_bundled_not_built_says_how_to_build(home):
    with pytest.raises(CorpusNotBuiltError, match="acodm corpus build"):
        load_text_corpus(CorpusConfig(source="bundled"))


def test_missing_columns_list_available(tmp_path, home):
    train = write_jsonl(tmp_path / "t.jsonl", pile_rows({"a": 4}))
    with pytest.raises(
        MissingColumnError, match="'meta.set'.*available columns: text, meta, meta.pile_set_name"
    ):
        load_text_corpus(
            CorpusConfig(
                source="json", data_files={"train": [str(train)]}, domain_column="meta.set"
            )
        )
    with pytest.raises(MissingColumnError, match="'body'.*text"):
        load_text_corpus(
            CorpusConfig(
                source="json",
                data_files={"train": [str(train)]},
                text_column="body",
                domain_column="meta.pile_set_name",
            )
        )


def test_unknown_and_duplicate_domains(tmp_path, home):
    train = write_jsonl(tmp_path / "t.jsonl", pile_rows({"a": 4, "b": 4}))
    base = dict(
        source="json", data_files={"train": [str(train)]}, domain_column="meta.pile_set_name"
    )
    with pytest.raises(UnknownDomainError, match="'?zz'?.*available domains: a, b"):
        load_text_corpus(CorpusConfig(**base, domains=["a", "zz"]))
    with pytest.raises(DuplicateDomainError, match="a"):
        load_text_corpus(CorpusConfig(**base, domains=["a", "b", "a"]))
    with pytest.raises(DuplicateDomainError, match="Law"):
        load_text_corpus(
            CorpusConfig(source="json", domain_files={"law": [str(train)], "Law ": [str(train)]})
        )


def test_empty_domains(tmp_path, home):
    rows = pile_rows({"a": 4}) + [{"text": "  ", "meta": {"pile_set_name": "blank"}}]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    val = write_jsonl(tmp_path / "v.jsonl", pile_rows({"a": 1}))
    base = dict(source="json", domain_column="meta.pile_set_name")
    with pytest.raises(EmptyDomainError, match="'blank'.*train"):
        load_text_corpus(
            CorpusConfig(
                **base,
                data_files={"train": [str(train)], "validation": [str(val)]},
                domains=["a", "blank"],
            )
        )
    rows = pile_rows({"a": 4, "b": 4})
    train = write_jsonl(tmp_path / "t2.jsonl", rows)
    with pytest.raises(EmptyDomainError, match="'b'.*validation"):
        load_text_corpus(
            CorpusConfig(**base, data_files={"train": [str(train)], "validation": [str(val)]})
        )
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "only one"}])
    with pytest.raises(EmptyDomainError, match="'solo'.*1 document"):
        load_text_corpus(CorpusConfig(source="json", domain_files={"solo": [str(one)]}))


def test_config_shape_errors(tmp_path):
    with pytest.raises(CorpusError, match="data_files.*domain_files"):
        load_text_corpus(CorpusConfig(source="json"))
    with pytest.raises(CorpusError, match="'test'"):
        load_text_corpus(CorpusConfig(source="json", data_files={"train": ["x"], "test": ["y"]}))
    with pytest.raises(CorpusError, match="domain_files"):
        load_text_corpus(CorpusConfig(source="text", data_files={"train": ["x"]}))
    assert issubclass(CorpusError, ValueError)


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


def test_hub_source_wiring(monkeypatch, home):
    """No network: load_dataset is faked; checks kwargs (trust_remote_code only when asked,
    streaming for capped samples) and the nested domain column."""
    import datasets

    rows = pile_rows({"Github": 30, "FreeLaw": 30, "Enron Emails": 30})
    calls: list[dict] = []

    def fake_load_dataset(path, **kwargs):
        calls.append({"path": path, **kwargs})
        ds = datasets.Dataset.from_list(rows)
        return {"train": ds.to_iterable_dataset() if kwargs.get("streaming") else ds}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    c = load_text_corpus(
        CorpusConfig(
            source="hub",
            path="org/pile",
            domain_column="meta.pile_set_name",
            validation_fraction=0.1,
        )
    )
    assert c.domains == ["Enron Emails", "FreeLaw", "Github"] and len(c.validation["Github"]) == 3
    assert calls[-1] == {"path": "org/pile", "streaming": False}  # no trust_remote_code
    c = load_text_corpus(
        CorpusConfig(
            source="hub",
            path="org/pile",
            domain_column="meta.pile_set_name",
            domains=["Github"],
            max_docs_per_domain=5,
            trust_remote_code=True,
        )
    )
    assert calls[-1]["streaming"] is True and calls[-1]["trust_remote_code"] is True
    assert c.domains == ["Github"] and len(c.train["Github"]) == 5
    with pytest.raises(CorpusError, match="corpus.path"):
        load_text_corpus(CorpusConfig(source="hub"))


def test_concurrent_loads_in_one_process_run_one_at_a_time(monkeypatch):
    """jobs/compare.py loads the corpus from several driver threads; Hugging Face `datasets` is not
    thread-safe there (tqdm's thread_map deletes a shared class lock: "type object 'tqdm' has no
    attribute '_lock'"), so load_tokenized runs one load at a time per process."""
    import threading
    import time

    from acodm_ray.data import load

    active, peak, guard = [0], [0], threading.Lock()

    def fake_corpus(cfg):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with guard:
            active[0] -= 1
        return "text"

    monkeypatch.setattr(load, "load_text_corpus", fake_corpus)
    monkeypatch.setattr(load, "load_or_train_tokenizer", lambda cfg, text: "tokenizer")
    monkeypatch.setattr(load, "tokenize_corpus", lambda text, tok: ("tokens", text, tok))

    class Cfg:
        corpus, tokenizer = None, None

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(load.load_tokenized(Cfg())))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(("tokens", "text", "tokenizer"), "tokenizer")] * 4
    assert peak[0] == 1
