"""DataMixingEnv.step against the training step it wraps, and against a bare PyTorch loop.

Interleaved round by round in one process (machine noise hits all alike); median seconds per
step. The env adds: action -> weights mapping, ODM bookkeeping for the warm-up, reward and info.

    python benchmarks/bench_env.py --config configs/demo.yaml --rounds 5 --steps 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from acodm_ray.config import load_config, to_dict  # noqa: E402
from acodm_ray.train_step import LMTrainer  # noqa: E402
from benchmarks.bench_train_step import BareLoop  # noqa: E402
from benchmarks.report import machine, table, update_section  # noqa: E402
from envs import DataMixingEnv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/results/env.json")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides + [f"train.steps={10**6}"])  # never truncate
    env = DataMixingEnv({"experiment": to_dict(cfg)})
    env.reset(seed=0)
    K = len(env.domains)
    action = np.full(K, 1.0 / K, dtype=np.float32)
    weights = np.full(K, 1.0 / K)
    trainer = LMTrainer(cfg, env.tokens, seed=1)
    bare = BareLoop(cfg, env.tokens)
    runners = {
        "bare": lambda: bare.step(weights),
        "train_step": lambda: trainer.step(weights),
        "env_step": lambda: env.step(action),
    }
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(args.rounds):
        for name in list(runners) if r % 2 == 0 else list(runners)[::-1]:
            start = time.perf_counter()
            for _ in range(args.steps):
                runners[name]()
            times[name].append((time.perf_counter() - start) / args.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "config": args.config,
        "overrides": args.overrides,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "seconds_per_step_median": med,
        "seconds_per_step_all": times,
        "env_over_train_step": med["env_step"] / med["train_step"],
        "env_over_bare": med["env_step"] / med["bare"],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    med_ms = {k: 1000 * v for k, v in med.items()}
    body = (
        f"Command: `python benchmarks/bench_env.py {' '.join(sys.argv[1:])}`  \n"
        f"Machine: {machine()}; median of {args.rounds} interleaved rounds of {args.steps} steps.\n\n"
        + table(
            ["what", "ms per step (median)", "ratio to env step"],
            [[k, med_ms[k], med[k] / med["env_step"]] for k in ("bare", "train_step", "env_step")],
        )
        + f"\n\nEnv step over the bare training step: {result['env_over_train_step']:.3f}x; over a bare "
        f"PyTorch loop: {result['env_over_bare']:.3f}x."
    )
    update_section("env_step", body)
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("seconds_per_step_median", "env_over_train_step", "env_over_bare")
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
