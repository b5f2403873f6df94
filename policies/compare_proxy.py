"""The AC-ODM proxy stage of the method comparison (jobs/compare.py, acodm_ray/compare.py): RLlib
trains the policy on a small proxy (`policies.run.run_proxy_rl`) inside a Ray task, so the proxy
stages of several seeds, and the baselines' target runs, can share the cluster with each other."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from acodm_ray.config import ExperimentConfig, from_dict, to_dict


def train_proxy_policy(cfg: ExperimentConfig, run_dir: str | Path, overwrite: bool = True) -> dict[str, Any]:
    """Train and export the AC-ODM policy of `cfg` (rl.algo must be acodm) into <run_dir>/policy."""
    from policies.run import run_proxy_rl

    if cfg.rl.algo != "acodm":
        raise ValueError(f"the comparison's proxy stage trains AC-ODM, got rl.algo={cfg.rl.algo!r}")
    start = time.perf_counter()
    summary = run_proxy_rl(cfg, run_dir, overwrite=overwrite, rollout=False)
    if "policy" not in summary:
        raise RuntimeError(f"the proxy stage in {run_dir} exported no policy")
    return {**summary, "run_dir": str(Path(run_dir).resolve()), "seconds": time.perf_counter() - start}


def _proxy_task(cfg_dict: dict[str, Any], run_dir: str, overwrite: bool, acodm_home: str | None) -> dict[str, Any]:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if acodm_home:
        os.environ["ACODM_HOME"] = acodm_home
    return train_proxy_policy(from_dict(ExperimentConfig, cfg_dict), run_dir, overwrite)


def ray_proxy_runner(num_cpus: float = 1.0) -> Callable[[ExperimentConfig, Path, bool], dict[str, Any]]:
    """A proxy runner for `acodm_ray.compare.run_comparison` that trains in a Ray task of `num_cpus`."""

    def run(cfg: ExperimentConfig, run_dir: Path, overwrite: bool) -> dict[str, Any]:
        import ray

        task = ray.remote(num_cpus=num_cpus, max_retries=0)(_proxy_task)
        ref = task.remote(to_dict(cfg), str(Path(run_dir).resolve()), overwrite, os.environ.get("ACODM_HOME"))
        return ray.get(ref)

    return run


__all__ = ["train_proxy_policy", "ray_proxy_runner"]
