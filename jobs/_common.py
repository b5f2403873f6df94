"""Shared plumbing of the job entry points: import path, arguments, error reporting, Ray start-up."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python jobs/x.py` and `ray job submit --working-dir .` alike
    sys.path.insert(0, str(ROOT))

# below the path: `python jobs/x.py` finds the packages through it (run_job, set_flags: the jobs
# report errors and read flags as `acodm` does)
from acodm_ray.cli import (  # noqa: E402,F401
    add_config_args,
    add_dry_run_arg,
    add_run_args,
    run_job,
    set_flags,
)
from acodm_ray.config import config_flag  # noqa: E402,F401  (flags that set a config field)
from acodm_ray.logs import HOOK, setup_job_logging  # noqa: E402
from acodm_ray.run import print_closing  # noqa: E402,F401  (a job's closing lines)
from acodm_ray.rundir import check_run_dir  # noqa: E402
from acodm_ray.safety import check_output_path  # noqa: E402


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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


def run_dir_for(args: argparse.Namespace, parent: str, name: str) -> Path:
    """--output-dir (else `parent`) / --name (else `name`), refused before anything starts if it
    points outside the user's tree or holds a run that neither --resume nor --overwrite names."""
    path = check_output_path(resolve_output_dir(args.output_dir or parent), args.name or name)
    return check_run_dir(path, resume=args.resume, overwrite=args.overwrite)


# ACODM_HOME: where the corpus, tokenizer and token caches live; the OpenMP wait settings: how
# long torch's idle threads spin (acodm_ray.bound_omp_spin set GOMP_SPINCOUNT on import)
FORWARDED_ENV = ("ACODM_HOME", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def forwarded_env_vars(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's `FORWARDED_ENV` values, for every process of the job on every node.

    On a cluster a worker's environment is its node's, not the driver's: a cache location set on
    the head only would send env runners and Train workers on other nodes to their own defaults.
    Forwarded through the job's runtime env, all of them read the driver's. A variable the submitted
    job's runtime env already sets is left out (it reaches every worker already, and Ray refuses a
    ray.init runtime env that repeats a key of the job's)."""
    environ = os.environ if environ is None else environ
    job_config = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    job_env = (job_config.get("runtime_env") or {}).get("env_vars") or {}
    return {k: environ[k] for k in FORWARDED_ENV if k in environ and k not in job_env}


def start(args: argparse.Namespace, plan) -> bool:
    """Check the job's plan (`acodm_ray.runplan.RunPlan`: a problem is an error naming its fix);
    under --dry-run print it and stop there, else start Ray. True when the job goes on."""
    if not plan.start(args.dry_run):
        return False
    init_ray()
    return True


def init_ray(num_cpus: int | None = None) -> None:
    """Join the cluster named by RAY_ADDRESS (set by `ray job submit`), else start a local one.

    The job's own modules travel to workers through the runtime env's working_dir when submitted;
    locally, PYTHONPATH points the workers at the repo.
    """
    # lazy: a job's --help and its config and run-dir errors come back without importing Ray
    import ray

    setup_job_logging()
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        runtime_env = {"worker_process_setup_hook": HOOK}
        if forwarded_env_vars():
            runtime_env["env_vars"] = forwarded_env_vars()
        ray.init(runtime_env=runtime_env)
        return
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    # address="local": never join a stale head that `ray start` left in /tmp/ray by accident.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"]},
            "worker_process_setup_hook": HOOK,
        },
    )
