"""The proxy stages of the method comparison (jobs/compare.py, acodm_ray/compare/): RLlib trains a
policy (AC-ODM or one of its variants, PPO, SAC, APPO) on a small proxy (`policies.run.run_proxy_rl`),
or a mixer's weight schedule is recorded on it (`acodm_ray.trajectory`), inside a Ray task, so the
proxy stages of several methods and seeds, and the target runs, can share the cluster."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from acodm_ray.config import ExperimentConfig, from_dict, to_dict
from acodm_ray.trajectory import train_trajectory_policy


def train_proxy_policy(
    cfg: ExperimentConfig, run_dir: str | Path, overwrite: bool = True, trainer: str = "rl"
) -> dict[str, Any]:
    """The proxy stage of one method: RLlib trains `cfg.rl.algo` and exports its policy ("rl"), or
    the proxy pretrains with `cfg.mixer` and its weight schedule is exported ("mixer"); either way
    the policy lands in <run_dir>/policy."""
    start = time.perf_counter()
    if trainer == "rl":
        # lazy: RLlib (seconds to import, in every Ray task); the "mixer" proxy stages never need it
        from policies.run import run_proxy_rl

        summary = run_proxy_rl(cfg, run_dir, overwrite=overwrite, rollout=False)
    elif trainer == "mixer":
        summary = train_trajectory_policy(cfg, run_dir, overwrite=overwrite)
    else:
        raise ValueError(f"unknown proxy trainer {trainer!r}; choose rl or mixer")
    if "policy" not in summary:
        raise RuntimeError(f"the proxy stage in {run_dir} exported no policy")
    return {
        **summary,
        "run_dir": str(Path(run_dir).resolve()),
        "seconds": time.perf_counter() - start,
    }


def _proxy_task(
    cfg_dict: dict[str, Any], run_dir: str, overwrite: bool, acodm_home: str | None, trainer: str
) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if acodm_home:
        os.environ["ACODM_HOME"] = acodm_home
    return train_proxy_policy(from_dict(ExperimentConfig, cfg_dict), run_dir, overwrite, trainer)


def ray_proxy_runner(num_cpus: float = 1.0, num_gpus: float = 0.0) -> Callable[..., dict[str, Any]]:
    """A proxy runner for `acodm_ray.compare.run_comparison` that trains in a Ray task of `num_cpus`
    CPUs and `num_gpus` GPUs."""

    def run(
        cfg: ExperimentConfig, run_dir: Path, overwrite: bool, trainer: str = "rl"
    ) -> dict[str, Any]:
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(_proxy_task)
        ref = task.remote(
            to_dict(cfg),
            str(Path(run_dir).resolve()),
            overwrite,
            os.environ.get("ACODM_HOME"),
            trainer,
        )
        return ray.get(ref)

    return run


__all__ = ["train_proxy_policy", "ray_proxy_runner"]
