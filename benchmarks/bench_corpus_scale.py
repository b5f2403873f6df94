"""Does a training process's memory and start-up stay flat as the corpus grows? Corpora of 0.1, 1 and
4 GB of text (benchmarks/big_corpus.py), each prepared once, then trained on by every kind of
process, on a tiny model (the data path is what is measured):

  prepare      `acodm corpus prepare` (2 tokenizer actors): seconds, characters/s, the driver's and
               the actors' peak RSS;
  pretrain     `acodm pretrain` (one process): peak RSS, seconds from launch to its first step;
  train worker `jobs/target_pretrain.py` (Ray Train, 1 worker): the worker's peak RSS (its own
               `ru_maxrss`, logged every step) and seconds from launch to the first step;
  env runner   `jobs/proxy_rl.py` with one remote env runner: the runner's peak RSS (polled) and
               seconds from launch to its first env step.
For comparison, the pre-shard path (commit d256366, `acodm pretrain`, token cache warm) on the
smallest corpus: it read every document and every token array into each process.

    python benchmarks/bench_corpus_scale.py --corpora /tmp/c01,/tmp/c1,/tmp/c4

Peak RSS counts file-backed pages too: a memory-mapped shard page the sampler touched is resident
(and shared by every process on the node, reclaimable); with a few steps drawn, that is a few pages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.data.build import default_corpus_dir  # noqa: E402
from benchmarks.report import table, update_section  # noqa: E402

PY = sys.executable
ACODM = str(Path(PY).parent / "acodm")
TINY_MODEL = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "train.seq_len=64",
              "train.micro_batch_size=4", "train.grad_accum=8", "train.eval_batches=1", "train.eval_every=1000",
              "train.checkpoint_every=1000", "tokenizer.vocab_size=2048"]  # fmt: skip


class PeakRSS(threading.Thread):
    """The largest RSS (MB) of any process whose command line matches `pattern`, polled."""

    def __init__(self, pattern: str) -> None:
        super().__init__(daemon=True)
        self.pattern, self.peak, self._halt = re.compile(pattern), 0.0, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for p in psutil.process_iter(["cmdline", "memory_info"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if p.info["memory_info"] and self.pattern.search(cmd):
                    self.peak = max(self.peak, p.info["memory_info"].rss / 2**20)
            self._halt.wait(0.25)

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return self.peak


def timed(cmd: list[str], env: dict, cwd: Path = ROOT) -> tuple[float, float, str]:
    """(seconds, the command's own peak RSS in MB from GNU time, its output)."""
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], env=env, cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rss = (
        float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
        / 1024
    )
    return seconds, rss, proc.stdout + proc.stderr


class FirstRecord(threading.Thread):
    """Seconds from its start until `path` (a run's JSON-lines log) has its first line."""

    def __init__(self, path: Path, timeout: float = 1800) -> None:
        super().__init__(daemon=True)
        self.path, self.timeout, self.seconds = path, timeout, None
        self.launched = time.time()
        self.start()

    def run(self) -> None:
        while time.time() - self.launched < self.timeout:
            if self.path.exists() and self.path.stat().st_size:
                self.seconds = time.time() - self.launched
                return
            time.sleep(0.1)

    def result(self) -> float | None:
        self.join()
        return self.seconds


def chars_of(corpus: Path) -> int:
    return sum(
        len(json.loads(line)["text"])
        for f in sorted(corpus.glob("part-*.jsonl"))
        for line in open(f)
    )


def measure(corpus: Path, home: Path, tokenizer: Path, out: Path) -> dict:
    env = {**os.environ, "ACODM_HOME": str(home), "TOKENIZERS_PARALLELISM": "true"}
    env.pop("RAY_ADDRESS", None)
    cfg = str(corpus / "corpus.yaml")
    prepared = out / f"prepared-{corpus.name}"
    sets = [f"tokenizer.path={tokenizer}", f"corpus.prepared={prepared}"]
    row: dict = {"corpus": corpus.name, "chars": chars_of(corpus)}

    actors = PeakRSS(r"MapWorker|MapBatches")
    actors.start()
    seconds, rss, _ = timed([ACODM, "corpus", "prepare", "--config", cfg, "--workers", "2",
                             *[a for s in sets for a in ("--set", s)]], env)  # fmt: skip
    row.update(prepare_s=seconds, prepare_mchars_s=row["chars"] / seconds / 1e6, prepare_driver_mb=rss,
               prepare_actor_mb=actors.stop())  # fmt: skip

    run = out / f"pretrain-{corpus.name}"
    first = FirstRecord(run / "metrics.jsonl")
    _, rss, _ = timed([ACODM, "pretrain", "--config", cfg, "--mixer", "uniform", "--output-dir", str(out),
                       "--name", run.name, *[a for s in [*sets, *TINY_MODEL, "train.steps=5"] for a in ("--set", s)]], env)  # fmt: skip
    row.update(pretrain_mb=rss, pretrain_first_step_s=first.result())

    target = out / f"target-{corpus.name}"
    first = FirstRecord(target / "ranks" / "rank0.jsonl")
    timed([PY, "jobs/target_pretrain.py", "--config", cfg, "--mixer", "uniform", "--output-dir", str(out),
           "--name", target.name, *[a for s in [*sets, *TINY_MODEL, "train.steps=5", "target.cpus_per_worker=1"]
                                    for a in ("--set", s)]], env)  # fmt: skip
    ranks = [
        json.loads(line) for line in (target / "ranks" / "rank0.jsonl").read_text().splitlines()
    ]
    row["train_worker_mb"] = max(r["max_rss_mb"] for r in ranks)
    row["target_first_step_s"] = first.result()

    proxy = out / f"proxy-{corpus.name}"
    runners = PeakRSS(r"SingleAgentEnvRunner")
    runners.start()
    launched = time.time()
    timed([PY, "jobs/proxy_rl.py", "--config", cfg, "--no-rollout", "--iterations", "1", "--output-dir", str(out),
           "--name", proxy.name, *[a for s in [*sets, *TINY_MODEL, "train.steps=5", "rl.num_env_runners=1",
           "rl.num_cpus_per_env_runner=0.5", "rl.min_sample_timesteps_per_iteration=5"] for a in ("--set", s)]], env)  # fmt: skip
    row["env_runner_mb"] = runners.stop()
    clock = [
        json.loads(line).get("first_env_step_time")
        for line in (proxy / "iterations.jsonl").read_text().splitlines()
    ]
    row["proxy_first_env_step_s"] = (min(t for t in clock if t) - launched) if any(clock) else None
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--corpora", required=True, help="comma-separated directories from big_corpus.py"
    )
    parser.add_argument("--work", default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--json", default=str(ROOT / "benchmarks" / "results" / "corpus_scale.json")
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="corpus_scale"))
    home = work / "home"
    (home / "corpus").mkdir(parents=True, exist_ok=True)
    if not (home / "corpus" / "debian-v1").exists():
        (home / "corpus" / "debian-v1").symlink_to(default_corpus_dir())
    from benchmarks.bench_prepare import bench_tokenizer

    tokenizer = bench_tokenizer(home)
    rows = []
    for corpus in args.corpora.split(","):
        rows.append(measure(Path(corpus), home, tokenizer, work))
        print(json.dumps(rows[-1]), flush=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    header = ["corpus", "M chars", "prepare s", "M chars/s", "driver MB", "actor MB", "pretrain MB",
              "pretrain 1st step s", "Train worker MB", "target 1st step s", "env runner MB",
              "proxy 1st env step s"]  # fmt: skip
    body = [[r["corpus"], r["chars"] / 1e6, r["prepare_s"], r["prepare_mchars_s"], r["prepare_driver_mb"],
             r["prepare_actor_mb"], r["pretrain_mb"], r["pretrain_first_step_s"], r["train_worker_mb"],
             r["target_first_step_s"], r["env_runner_mb"], r["proxy_first_env_step_s"]] for r in rows]  # fmt: skip
    text = table(header, body)
    print(text)
    update_section("corpus-scale", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
