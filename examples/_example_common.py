"""What both examples share: their command line, the corpus and model from a config, and the
summary they write. Not part of the library: the examples show the library's API, this keeps their
boilerplate in one place."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

from acodm_ray.config import load_config  # noqa: E402
from acodm_ray.data.load import load_tokenized  # noqa: E402
from acodm_ray.model import build_model  # noqa: E402


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--mixer", default=None, help="a mixer name (default: the config's mixer.name)")
    which.add_argument("--policy", default=None, help="an exported policy directory (runs/<name>/policy)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: train.steps)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--output", default=None)
    return p


def setup(args: argparse.Namespace):
    """(config, tokenized corpus, a fresh model, optimizer steps) for the run `args` describes."""
    cfg = load_config(args.config, args.overrides)
    tokens, _ = load_tokenized(cfg)
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, cfg.train.seed)
    return cfg, tokens, model, args.steps or cfg.train.steps


def summarise(feedback, out: Path, **extra) -> dict:
    """The run's mixer, steps and weights (every decision, the initial one first) in out/summary.json."""
    summary = {
        "mixer": feedback.mixer.name,
        "steps": feedback.step_count,
        "domains": feedback.domains,
        "final_weights": dict(zip(feedback.domains, map(float, feedback.current))),
        "weights": [w.tolist() for w in feedback.dataset.history],
        "output": str(out),
        **extra,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("mixer", "steps", "final_weights", "output")}, indent=2))
    return summary
