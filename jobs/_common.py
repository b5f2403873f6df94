"""Shared plumbing of the job entry points: import path, arguments, Ray start-up."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python jobs/x.py` and `ray job submit --working-dir .` alike
    sys.path.insert(0, str(ROOT))


def base_parser(description: str) -> argparse.ArgumentParser:
    from acodm_ray.cli import add_config_args, add_run_args

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    add_run_args(parser)
    return parser


def in_submitted_job() -> bool:
    """True inside `ray job submit`: the job supervisor passes its config in this variable."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def resolve_output_dir(path: str) -> Path:
    """Where runs go. A submitted job runs in a temporary copy of the working dir that Ray deletes,
    so there a relative `output_dir` resolves under $ACODM_OUTPUT_ROOT (default ~/acodm-runs)."""
    out = Path(path).expanduser()
    if out.is_absolute():
        return out
    if os.environ.get("ACODM_OUTPUT_ROOT"):
        return Path(os.environ["ACODM_OUTPUT_ROOT"]).expanduser() / out
    if in_submitted_job():
        return Path.home() / "acodm-runs" / out
    return out.resolve()


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (set by `ray job submit`), else start a local one.

    The job's own modules travel to workers through the runtime env's working_dir when submitted;
    locally, PYTHONPATH points the workers at the repo.
    """
    import ray

    from acodm_ray.logs import HOOK, setup_job_logging

    setup_job_logging()
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"worker_process_setup_hook": HOOK})
        return
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    # address="local": never join a stale head that `ray start` left in /tmp/ray by accident.
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]}, "worker_process_setup_hook": HOOK})
