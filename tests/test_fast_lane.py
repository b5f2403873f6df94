"""The fast lane's check reads a job from a command line as the suite writes them (tests/fast_lane.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fast_lane import job_in
from tests.isolation import UNSHARE, isolated_script

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.mark.parametrize(
    ("args", "job"),
    [
        (
            [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "x.py"],
            "torch.distributed.run",
        ),
        (
            [PY, str(ROOT / "examples" / "hf_trainer.py"), "--steps", "2"],
            str(ROOT / "examples" / "hf_trainer.py"),
        ),
        (
            ["bash", "-euo", "pipefail", "-c", ".venv/bin/python jobs/compare.py --quick"],
            "jobs/compare.py",
        ),
        (
            [*UNSHARE, "bash", "-c", isolated_script(Path("/x"), "ray start --head\nray stop")],
            "ray",
        ),
        (["bash", "-c", "make demo"], "make"),
        ("ray job submit -- python x.py", "ray"),
        (
            [str(ROOT / ".venv" / "bin" / "acodm"), "pretrain"],
            str(ROOT / ".venv" / "bin" / "acodm"),
        ),
    ],
)
def test_a_job_is_read_from_its_command_line(args, job):
    assert job_in(args) == job


@pytest.mark.parametrize(
    "args",
    [
        [PY, "-c", "import ray, sys; sys.exit(0)"],  # a python -c program is not a command line
        ["git", "rev-parse", "--show-toplevel"],
        ["apt-get", "download", "no-such-package"],
        [*UNSHARE, "true"],
        [PY, "/opt/ray/_private/workers/default_worker.py", "--temp-dir=/tmp/ray"],
        ["bash", "-c", "echo 'unbalanced"],
    ],
)
def test_small_subprocesses_are_not_jobs(args):
    assert job_in(args) is None
