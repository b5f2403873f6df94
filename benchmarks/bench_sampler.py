"""Reading windows from memory-mapped shards against reading them from whole arrays in memory.

Two measurements on a prepared corpus, each variant taking turns round by round in one process:
  windows  - `MixtureSampler.batch` (one micro-batch of `micro_batch_size` windows of seq_len + 1
             tokens) from the prepared shards (`TokenStream`, uint16 memmaps), against the
             pre-shard read: the same windows sliced out of one int32 array per domain in memory
             (`np.stack` of slices, as the sampler did before shards);
  step     - `LMTrainer.step` with the corpus's streams as shards, against the same tokens loaded
             into arrays (the step's time must not move: reading is a small part of it).
Reports medians (windows/s, seconds per step) and the ratio shards / in-memory.

    python benchmarks/bench_sampler.py --config configs/demo.yaml --rounds 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acodm_ray.config import load_config  # noqa: E402
from acodm_ray.data.load import load_tokenized  # noqa: E402
from acodm_ray.data.tokens import TokenizedCorpus  # noqa: E402
from acodm_ray.sampler import MixtureSampler  # noqa: E402
from acodm_ray.train_step import LMTrainer  # noqa: E402
from benchmarks.report import machine, table, update_section  # noqa: E402


def in_memory(tokens: TokenizedCorpus) -> TokenizedCorpus:
    """The same streams as whole int32 arrays (what every process held before shards)."""
    arrays = {
        split: {d: getattr(tokens, split)[d][0 : len(getattr(tokens, split)[d])].astype(np.int32) for d in tokens.domains}
        for split in ("train", "validation")
    }  # fmt: skip
    return TokenizedCorpus(
        tokens.domains, arrays["train"], arrays["validation"], tokens.vocab_size, tokens.eos_id
    )


def old_batch(sampler: MixtureSampler, arrays: list[np.ndarray], k: int) -> np.ndarray:
    """The sampler's read before shards: slices of one array, stacked, then widened."""
    stream = arrays[k]
    starts = sampler.data_rng.integers(
        0, len(stream) - sampler.seq_len, size=sampler.micro_batch_size
    )
    return np.stack([stream[s : s + sampler.seq_len + 1] for s in starts]).astype(np.int64)


def time_windows(cfg, tokens, arrays, rounds: int, per_round: int = 2000) -> dict[str, list[float]]:
    t = cfg.train
    shards = MixtureSampler(tokens.train, tokens.domains, t.seq_len, t.micro_batch_size, seed=0)
    memory = MixtureSampler(arrays, tokens.domains, t.seq_len, t.micro_batch_size, seed=0)
    flat = [arrays[d] for d in tokens.domains]
    K, out = len(tokens.domains), {"shards": [], "in memory": []}
    for r in range(rounds):
        for name in ["shards", "in memory"] if r % 2 == 0 else ["in memory", "shards"]:
            start = time.perf_counter()
            for i in range(per_round):
                shards.batch(i % K) if name == "shards" else old_batch(memory, flat, i % K)
            out[name].append(per_round * t.micro_batch_size / (time.perf_counter() - start))
    return out


def time_steps(cfg, tokens, memory, rounds: int) -> dict[str, list[float]]:
    trainers = {"shards": LMTrainer(cfg, tokens), "in memory": LMTrainer(cfg, memory)}
    weights = np.full(len(tokens.domains), 1 / len(tokens.domains))
    out = {name: [] for name in trainers}
    for r in range(rounds):
        for name in list(trainers) if r % 2 == 0 else list(trainers)[::-1]:
            start = time.perf_counter()
            trainers[name].step(weights)
            out[name].append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sampler.json"))
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    tokens, _ = load_tokenized(cfg)
    memory = in_memory(tokens)
    windows = time_windows(cfg, tokens, memory.train, args.rounds)
    steps = time_steps(cfg, tokens, memory, args.rounds)
    med = {k: statistics.median(v) for k, v in windows.items()}
    step = {k: statistics.median(v) for k, v in steps.items()}
    Path(args.json).write_text(
        json.dumps({"windows_per_s": windows, "step_s": steps, "machine": machine()})
    )
    rows = [
        [
            "windows/s (sampler.batch)",
            med["shards"],
            med["in memory"],
            med["shards"] / med["in memory"],
        ],
        [
            "seconds per LMTrainer.step",
            step["shards"],
            step["in memory"],
            step["shards"] / step["in memory"],
        ],
    ]
    text = (f"`{Path(args.config).name}` (seq_len {cfg.train.seq_len}, micro-batch {cfg.train.micro_batch_size}), "
            f"{machine()}, median of {args.rounds} alternating rounds\n\n"
            + table(["", "shards (memmap)", "in memory (int32 arrays)", "shards / in memory"], rows))  # fmt: skip
    print(text)
    update_section("sampler-shards", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
