"""A mixer's run on the proxy, transferred as a weight schedule: the proxy stage of methods whose
"policy" is not learned by RL (e.g. `alignment-proxy` in jobs/compare.py).

The proxy pretrains with `cfg.mixer` (`acodm_ray.pretrain`), and the weights it used at every step
are exported as a trajectory policy (safetensors + JSON, `policy_file.save_trajectory_policy`)
that a target replays by training progress, so the target sees the proxy's schedule stretched to
its own number of steps -- the same transfer as proxy-mode AC-ODM, without a state-reading actor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.agent.policy_file import save_trajectory_policy
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.metrics import read_metrics
from acodm_ray.pretrain import pretrain
from acodm_ray.rundir import write_json

POLICY_DIR = "policy"


def weights_per_step(run_dir: str | Path, domains: list[str]) -> np.ndarray:
    """[T, K]: row t = the weights step t + 1 trained with (from the run's metrics.jsonl)."""
    steps, _ = read_metrics(run_dir)
    steps = sorted(steps, key=lambda r: int(r["step"]))
    return np.array([[float(r[f"weight/{d}"]) for d in domains] for r in steps], dtype=np.float64)


def train_trajectory_policy(
    cfg: ExperimentConfig, run_dir: str | Path, overwrite: bool = True
) -> dict[str, Any]:
    """Pretrain the proxy with `cfg.mixer`, export its weight schedule to <run_dir>/policy."""
    run_dir = Path(run_dir)
    summary = pretrain(cfg, run_dir, overwrite=overwrite, progress=False)
    domains = list(summary["domains"])
    weights = weights_per_step(run_dir, domains)
    if len(weights) != cfg.train.steps:
        raise RuntimeError(
            f"the proxy run in {run_dir} logged {len(weights)} steps, expected {cfg.train.steps}"
        )
    policy = save_trajectory_policy(
        run_dir / POLICY_DIR, weights, domains, summary["state_spec"], to_dict(cfg)
    )
    summary = {**summary, "policy": str(policy), "run_dir": str(run_dir.resolve())}
    write_json(run_dir / "summary.json", summary)
    return summary
