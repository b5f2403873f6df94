"""Does a training process's memory and start-up stay flat as the corpus grows? Corpora of 0.1, 1 and
4 GB of text (benchmarks/big_corpus.py), each prepared once, then trained on by every kind of
process, on a tiny model (the data path is what is measured):

  prepare      `acodm corpus prepare` (2 tokenizer actors): seconds, characters/s, the peak RSS of
               the driver, of a tokenizer actor and of a read task;
  pretrain     `acodm pretrain` (one process): peak RSS, seconds from launch to its first step;
  train worker `jobs/target_pretrain.py` (Ray Train, 1 worker): the worker's peak RSS (its own
               `ru_maxrss`, logged every step) and seconds from launch to the first step;
  env runner   `jobs/proxy_rl.py` with one remote env runner: the runner's peak RSS (polled) and
               seconds from launch to its first env step.
For comparison, the pre-shard path (commit d256366, `acodm pretrain`, token cache warm) on the
smallest corpus: it read every document and every token array into each process.

    python benchmarks/bench_corpus_scale.py --corpora /tmp/c01,/tmp/c1,/tmp/c4
    chrt -r 1 python benchmarks/bench_corpus_scale.py ...   # ahead of other work (below)

Under `chrt -r 1` (SCHED_RR; root or CAP_SYS_NICE) this script and every process it starts run
ahead of all other work on the machine (benchmarks/report.under_realtime says what that does not
give); the table says whether a run was measured so.

Memory is "peak RSS (peak anonymous)" in MB, polled from /proc every 0.2 s: RSS counts pages shared
with other processes (libraries, the memory-mapped shard pages a sampler touched, Ray's object-store
pages a worker maps while reading blocks); the anonymous part is the process's own heap.
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
from benchmarks.report import table, under_realtime, update_section  # noqa: E402

PY = sys.executable
ACODM = str(Path(PY).parent / "acodm")
TINY_MODEL = ["model.hidden_size=32", "model.num_layers=2", "model.num_heads=2", "train.seq_len=64",
              "train.micro_batch_size=4", "train.grad_accum=8", "train.eval_batches=1", "train.eval_every=1000",
              "train.checkpoint_every=1000", "tokenizer.vocab_size=2048"]  # fmt: skip


def memory_mb(pid: int) -> dict[str, float]:
    """RSS and its parts (MB) from /proc: anonymous (the process's own heap), file-backed (mapped
    files: memory-mapped shards, libraries; shared with every process on the node, reclaimable) and
    shared memory (Ray's object store pages a worker maps while reading blocks)."""
    fields = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in fields:
                out[fields[key]] = float(value.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


class Peaks(threading.Thread):
    """Peak RSS and peak anonymous memory (MB) of the process `pid` (if given), or of every process
    under it whose command line matches `pattern` (so another Ray on the machine never counts),
    polled every 0.2 s."""

    def __init__(self, pid: int, pattern: str | None = None) -> None:
        super().__init__(daemon=True)
        self.pattern = re.compile(pattern) if pattern else None
        self.pid, self.peak = pid, {"rss": 0.0, "anon": 0.0}
        self._halt = threading.Event()
        self.start()

    def pids(self) -> list[int]:
        if not self.pattern:
            return [self.pid]
        try:
            under = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [p.pid for p in under if self.pattern.search(" ".join(_cmdline(p)))]

    def run(self) -> None:
        while not self._halt.is_set():
            for pid in self.pids():
                mem = memory_mb(pid)
                for key in self.peak:
                    self.peak[key] = max(self.peak[key], mem.get(key, 0.0))
            self._halt.wait(0.2)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join()
        return self.peak


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def run(cmd: list[str], env: dict, *patterns: str) -> tuple[float, dict, list[dict]]:
    """Run `cmd`: (seconds, its own peak memory, the peak memory of the processes under it matching
    each of `patterns`)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    own, others = Peaks(proc.pid), [Peaks(proc.pid, pattern) for pattern in patterns]
    output, _ = proc.communicate()
    seconds = time.perf_counter() - start
    peaks = own.stop(), [o.stop() for o in others]
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{output[-4000:]}")
    return seconds, *peaks


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


def flags(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def measure(corpus: Path, home: Path, tokenizer: Path, out: Path) -> dict:
    """One corpus: prepared, then trained on by each kind of process (module docstring)."""
    env = {**os.environ, "ACODM_HOME": str(home), "TOKENIZERS_PARALLELISM": "true"}
    env.pop("RAY_ADDRESS", None)
    cfg = str(corpus / "corpus.yaml")
    sets = [f"tokenizer.path={tokenizer}", f"corpus.prepared={out / f'prepared-{corpus.name}'}"]
    train = [*sets, *TINY_MODEL, "train.steps=5"]
    row: dict = {"corpus": corpus.name, "chars": chars_of(corpus)}

    seconds, driver, (actors, reads) = run([ACODM, "corpus", "prepare", "--config", cfg, "--workers", "2",
                                            *flags(sets)], env, r"MapWorker|MapBatches", r"^ray::Read")  # fmt: skip
    row.update(prepare_s=seconds, prepare_mchars_s=row["chars"] / seconds / 1e6, prepare_driver=driver,
               prepare_actor=actors, prepare_read_task=reads)  # fmt: skip

    first = FirstRecord(out / f"pretrain-{corpus.name}" / "metrics.jsonl")
    _, own, _ = run([ACODM, "pretrain", "--config", cfg, "--mixer", "uniform", "--output-dir", str(out),
                     "--name", f"pretrain-{corpus.name}", *flags(train)], env)  # fmt: skip
    row.update(pretrain=own, pretrain_first_step_s=first.result())

    first = FirstRecord(out / f"target-{corpus.name}" / "ranks" / "rank0.jsonl")
    _, _, (worker,) = run([PY, "jobs/target_pretrain.py", "--config", cfg, "--mixer", "uniform", "--output-dir",
                        str(out), "--name", f"target-{corpus.name}", *flags([*train, "target.cpus_per_worker=1"])],
                       env, r"RayTrainWorker")  # fmt: skip
    row.update(train_worker=worker, target_first_step_s=first.result())

    proxy = out / f"proxy-{corpus.name}"
    launched = time.time()
    _, _, (runner,) = run([PY, "jobs/proxy_rl.py", "--config", cfg, "--no-rollout", "--iterations", "1", "--output-dir",
                        str(out), "--name", proxy.name, *flags([*train, "rl.num_env_runners=1",
                        "rl.num_cpus_per_env_runner=0.5", "rl.min_sample_timesteps_per_iteration=5"])],
                       env, r"SingleAgentEnvRunner")  # fmt: skip
    clock = [
        json.loads(line).get("first_env_step_time")
        for line in (proxy / "iterations.jsonl").read_text().splitlines()
    ]
    row.update(
        env_runner=runner,
        proxy_first_env_step_s=(min(t for t in clock if t) - launched) if any(clock) else None,
    )
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
    parser.add_argument(
        "--append", action="store_true", help="add these corpora's rows to those already in --json"
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="corpus_scale"))
    home = work / "home"
    (home / "corpus").mkdir(parents=True, exist_ok=True)
    if not (home / "corpus" / "debian-v1").exists():
        (home / "corpus" / "debian-v1").symlink_to(default_corpus_dir())
    from benchmarks.bench_prepare import bench_tokenizer

    tokenizer = bench_tokenizer(home)
    rows = json.loads(Path(args.json).read_text()) if args.append else []
    for corpus in args.corpora.split(","):
        rows.append(measure(Path(corpus), home, tokenizer, work))
        print(json.dumps(rows[-1]), flush=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))
    header = ["corpus", "M chars", "prepare s", "M chars/s", "driver MB", "actor MB", "read task MB", "pretrain MB",
              "pretrain 1st step s", "Train worker MB", "target 1st step s", "env runner MB",
              "proxy 1st env step s"]  # fmt: skip

    def mb(peak: dict) -> str:
        return f"{peak['rss']:,.0f} ({peak['anon']:,.0f})"

    body = [[r["corpus"], r["chars"] / 1e6, r["prepare_s"], r["prepare_mchars_s"], mb(r["prepare_driver"]),
             mb(r["prepare_actor"]), mb(r["prepare_read_task"]), mb(r["pretrain"]), r["pretrain_first_step_s"], mb(r["train_worker"]),
             r["target_first_step_s"], mb(r["env_runner"]), r["proxy_first_env_step_s"]] for r in rows]  # fmt: skip
    note = (
        "Measured under SCHED_RR (ahead of other work on the machine).\n\n"
        if under_realtime()
        else ""
    )
    text = note + table(header, body)
    print(text)
    update_section("corpus-scale", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
