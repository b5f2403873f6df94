"""What both examples share: their command line, the corpus and model from a config, and the
summary they write. Not part of the library: the examples show the library's API, this keeps their
boilerplate in one place."""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # runnable from a checkout without install

from acodm_ray.config import load_config  # noqa: E402
from acodm_ray.data.load import load_tokenized  # noqa: E402
from acodm_ray.model import build_model  # noqa: E402


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--mixer", default=None, help="a mixer name (default: the config's mixer.name)"
    )
    which.add_argument(
        "--policy", default=None, help="an exported policy directory (runs/<name>/policy)"
    )
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: train.steps)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--output", default=None)
    p.add_argument(
        "--trace",
        action="store_true",
        help="write <output>/trace.rank<r>.jsonl: one line per optimizer step on each rank (StepTrace)",
    )
    return p


def setup(args: argparse.Namespace):
    """(config, tokenized corpus, a fresh model, optimizer steps) for the run `args` describes."""
    cfg = load_config(args.config, args.overrides)
    tokens, _ = load_tokenized(cfg)
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, cfg.train.seed)
    return cfg, tokens, model, args.steps or cfg.train.steps


class StepTrace:
    """`--trace`: what each optimizer step did on this rank, one JSON line per step in
    `<out>/trace.rank<r>.jsonl` -- the weights it drew with and the decision published after it
    (the same on every rank), all ranks' sequences per domain (what the mixer saw), this rank's own
    per-domain sequences, loss sums and tokens (its share of the all-reduce), and a CRC32 of each
    example this rank trained on (different ranks, different examples). For checking a run on
    several processes (torchrun); off by default."""

    def __init__(self, out: Path, rank: int) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / f"trace.rank{rank}.jsonl"
        self.path.write_text("")
        self.rank = rank
        self._examples: list[int] = []

    def examples(self, input_ids) -> None:
        """A micro-batch this rank trains on (its `input_ids`, or the labels: the same tokens)."""
        self._examples += [zlib.crc32(row.tobytes()) for row in input_ids.detach().cpu().numpy()]

    def step(self, feedback, signals) -> None:
        extra = signals.extra
        line = {
            "step": signals.step,
            "rank": self.rank,
            "weights": feedback.dataset.weights_for_step(signals.step - 1).tolist(),
            "decided": feedback.current.tolist(),
            "counts": signals.counts.tolist(),
            "losses": [float(x) for x in signals.losses],
            **{k: extra[k].tolist() for k in ("rank_counts", "rank_loss_sums", "rank_tokens")},
            "examples": self._examples,
        }
        self._examples = []
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def summarise(feedback, out: Path, **extra) -> dict:
    """The run's mixer, steps and weights (every decision, the initial one first) in out/summary.json
    (on several processes: rank 0's; rank r > 0 writes summary.rank<r>.json)."""
    rank = feedback.rank
    summary = {
        "mixer": feedback.mixer.name,
        "steps": feedback.step_count,
        "domains": feedback.domains,
        "final_weights": dict(zip(feedback.domains, map(float, feedback.current))),
        "weights": [w.tolist() for w in feedback.dataset.history],
        "output": str(out),
        "rank": rank,
        "world_size": feedback.collective.world_size,
        **extra,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / ("summary.json" if rank == 0 else f"summary.rank{rank}.json")).write_text(
        json.dumps(summary, indent=2)
    )
    if rank == 0:
        print(
            json.dumps(
                {k: summary[k] for k in ("mixer", "steps", "final_weights", "output")}, indent=2
            )
        )
    return summary
