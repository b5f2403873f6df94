"""Corpus preparation throughput: the Ray Data pipeline against the tokenizer's own rate and the
pre-shard path, side by side on the same corpus and cores.

Variants, alternating round by round (each in a fresh process, so each peak RSS is its own):
  raw      - `tokenizers` `encode_batch_fast` (ids, no offsets: what the prepare's actors call) over
             the documents already in memory (Rust, every core):
             the physical limit of tokenizing on this machine, no reading, no writing;
  raw-1    - the same on one thread (RAYON_NUM_THREADS=1, as each tokenizer actor runs): one core's
             limit, what one actor could reach at best;
  old      - the pre-shard path at commit d256366 (`load_tokenized`: read every document into
             Python lists with Hugging Face `datasets`, encode in one process, save .npy);
  new-1/2  - `acodm corpus prepare` (acodm_ray/data/prepare.py) with 1 and 2 tokenizer actors, on a
             Ray instance started for it (Ray's start-up is not counted: the time is the prepare's).
Every variant encodes with the same 2,048-token byte-level BPE (the bundled corpus's, given as
`tokenizer.path`, so no variant trains one). Reports characters/s (median over rounds), ratios to
raw and to old, and each variant's peak RSS.

    python benchmarks/big_corpus.py --gb 0.1 --out /tmp/c01
    python benchmarks/bench_prepare.py --corpus /tmp/c01 --rounds 3
    chrt -r 1 python benchmarks/bench_prepare.py --corpus /tmp/c01 --rounds 3   # ahead of other work
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.data.build import default_corpus_dir  # noqa: E402
from benchmarks.report import table, under_realtime, update_section  # noqa: E402

OLD_COMMIT = "d256366"
VARIANTS = ("raw", "raw-1", "old", "new-1", "new-2")


def corpus_files(corpus: Path) -> list[str]:
    return sorted(str(p) for p in corpus.glob("part-*.jsonl"))


def count_chars(files: list[str]) -> int:
    return sum(len(json.loads(line)["text"]) for f in files for line in open(f))


def bench_tokenizer(home: Path) -> Path:
    """The bundled corpus's 2,048-token BPE (prepared once under `home`), saved as a directory."""
    from acodm_ray.config import load_config
    from acodm_ray.data.prepared import ensure_prepared

    os.environ["ACODM_HOME"] = str(home)
    cfg = load_config(None, ["corpus.source=bundled", "tokenizer.vocab_size=2048"])
    return Path(ensure_prepared(cfg, progress=False)) / "tokenizer"


# ------------------------------------------------------------------------------- one measurement


def run_raw(files: list[str], tokenizer: Path) -> float:
    from tokenizers import Tokenizer

    texts = [json.loads(line)["text"] for f in files for line in open(f)]
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    start = time.perf_counter()
    for i in range(0, len(texts), 256):
        tok.encode_batch_fast(texts[i : i + 256], add_special_tokens=False)
    return time.perf_counter() - start


def run_new(files: list[str], tokenizer: Path, workers: int, out: Path) -> float:
    import ray

    from acodm_ray.config import load_config
    from acodm_ray.data.prepare import prepare_into
    from acodm_ray.data.sources import plan_source

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    cfg = load_config(None, [f"corpus.data_files={json.dumps({'train': files})}", "corpus.source=json",
                             "corpus.validation_fraction=0.01", f"tokenizer.path={tokenizer}",
                             f"prepare.workers={workers}"])  # fmt: skip
    start = time.perf_counter()
    prepare_into(cfg, plan_source(cfg.corpus), out, progress=False)
    return time.perf_counter() - start


def run_old(files: list[str], tokenizer: Path, home: Path) -> float:
    """The pre-shard path, from a worktree of OLD_COMMIT (first on sys.path)."""
    tree = home / "old-tree"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), OLD_COMMIT], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
    sys.path.insert(0, str(tree))
    for name in [m for m in sys.modules if m.startswith("acodm_ray")]:
        del sys.modules[name]
    from acodm_ray.config import load_config
    from acodm_ray.data.load import load_tokenized

    os.environ["ACODM_HOME"] = str(home / "old-cache")
    shutil.rmtree(home / "old-cache", ignore_errors=True)
    cfg = load_config(None, [f"corpus.data_files={json.dumps({'train': files})}", "corpus.source=json",
                             "corpus.validation_fraction=0.01", f"tokenizer.path={tokenizer}"])  # fmt: skip
    start = time.perf_counter()
    load_tokenized(cfg)
    return time.perf_counter() - start


def one(args: argparse.Namespace) -> None:
    files, tokenizer, home = corpus_files(Path(args.corpus)), Path(args.tokenizer), Path(args.home)
    if args.one in ("raw", "raw-1"):
        seconds = run_raw(files, tokenizer)
    elif args.one == "old":
        seconds = run_old(files, tokenizer, home)
    else:
        out = Path(tempfile.mkdtemp(dir=home))
        seconds = run_new(files, tokenizer, int(args.one.split("-")[1]), out)
        shutil.rmtree(out)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"variant": args.one, "seconds": seconds, "driver_rss_mb": rss_mb}))


# ------------------------------------------------------------------------------- the rounds


def measure(corpus: Path, rounds: int, variants: list[str], home: Path) -> dict:
    """Every variant `rounds` times, order rotating, each in a fresh process (which inherits this
    one's scheduling: run the script under `chrt -r 1` to run ahead of other work on the machine)."""
    tokenizer = bench_tokenizer(home)
    chars = count_chars(corpus_files(corpus))
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for v in order:
            cmd = [sys.executable, __file__, "--one", v, "--corpus", str(corpus), "--tokenizer", str(tokenizer),
                   "--home", str(home)]  # fmt: skip
            env = {**os.environ, "ACODM_HOME": str(home), "TOKENIZERS_PARALLELISM": "true"}
            if v == "raw-1":
                env["RAYON_NUM_THREADS"] = "1"
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise RuntimeError(f"{v} failed: {proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[v].append(result)
            print(f"round {r + 1} {v}: {chars / result['seconds'] / 1e6:.2f} M chars/s, "
                  f"peak RSS {result['driver_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    return {"chars": chars, "rounds": rounds, "realtime": under_realtime(), "runs": runs}


def report(result: dict, label: str) -> str:
    chars = result["chars"]
    rate = {
        v: statistics.median(chars / r["seconds"] for r in rs) for v, rs in result["runs"].items()
    }
    rss = {v: max(r["driver_rss_mb"] for r in rs) for v, rs in result["runs"].items()}

    def ratio(v: str, base: str) -> float | str:
        return rate[v] / rate[base] if base in rate else ""

    rows = [
        [v, rate[v] / 1e6, ratio(v, "raw"), ratio(v, "raw-1"), ratio(v, "old"), rss[v]]
        for v in rate
    ]
    head = f"{label}: {chars / 1e6:.0f} M characters, {os.cpu_count()} CPUs, median of {result['rounds']} rounds"
    if result.get("realtime"):
        head += " (each variant under SCHED_RR: ahead of other work on the machine)"
    if "new-1" in rate and "new-2" in rate:
        head += f"; 2 tokenizer actors / 1: {rate['new-2'] / rate['new-1']:.2f}x"
    return (
        head
        + "\n\n"
        + table(["variant", "M chars/s", "x raw", "x raw-1", "x old", "peak RSS MB (driver)"], rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpus", required=True, help="a directory made by benchmarks/big_corpus.py"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--home", default=None, help="scratch ACODM_HOME (default: a temp dir)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "prepare.json"))
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return 0
    home = Path(args.home or tempfile.mkdtemp(prefix="bench_prepare"))
    home.mkdir(parents=True, exist_ok=True)
    (home / "corpus").mkdir(exist_ok=True)
    bundled = default_corpus_dir()  # the user's bundled corpus, before ACODM_HOME points elsewhere
    if not (home / "corpus" / "debian-v1").exists():
        (home / "corpus" / "debian-v1").symlink_to(bundled)
    variants = args.variants.split(",")
    result = measure(Path(args.corpus), args.rounds, variants, home)
    Path(args.json).write_text(json.dumps(result, indent=1))
    text = report(result, f"`{Path(args.corpus).name}`")
    print(text)
    update_section("prepare-throughput", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
