"""torch's idle OpenMP threads spin briefly (acodm_ray.bound_omp_spin): set before torch loads
libgomp, left alone when the user chose, forwarded to a job's workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from acodm_ray import OMP_WAIT_VARS, SPIN_COUNT, bound_omp_spin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "jobs"))
from _common import forwarded_env_vars  # noqa: E402


def test_the_spin_is_bounded_unless_the_user_chose_a_wait():
    env = {"HOME": "/root"}
    assert bound_omp_spin(env) is True
    assert env == {"HOME": "/root", "GOMP_SPINCOUNT": SPIN_COUNT}
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "300000")):
        env = {name: value}
        assert bound_omp_spin(env) is False
        assert env == {name: value}  # the user's setting, and nothing added


def _fresh_python(code: str) -> dict:
    """Run `code` in a new interpreter whose environment sets neither wait variable; it prints JSON."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_WAIT_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "jobs")])
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# what libgomp reads when torch loads it: the C environment (getenv), not Python's os.environ copy
PROBE = """
import ctypes, json, sys
{imports}
getenv = ctypes.CDLL(None).getenv
getenv.restype = ctypes.c_char_p
print(json.dumps({{"torch_loaded_first": {torch_first}, "getenv": (getenv(b"GOMP_SPINCOUNT") or b"").decode()}}))
"""


def test_the_entry_points_set_it_before_torch_is_loaded():
    # a job's first import (jobs/_common) and `acodm` (acodm_ray.cli) load acodm_ray, not torch
    for entry in ("import _common", "import acodm_ray.cli"):
        seen = _fresh_python(PROBE.format(imports=entry, torch_first='"torch" in sys.modules'))
        assert seen == {"torch_loaded_first": False, "getenv": SPIN_COUNT}, entry
    # and a process that imports the trainer has it in its C environment when torch is loaded
    seen = _fresh_python(
        PROBE.format(imports="import acodm_ray.train_step, torch", torch_first="False")
    )
    assert seen["getenv"] == SPIN_COUNT


def test_a_jobs_workers_get_the_drivers_wait_settings():
    assert forwarded_env_vars({"GOMP_SPINCOUNT": "1000", "HOME": "/root"}) == {
        "GOMP_SPINCOUNT": "1000"
    }
    assert forwarded_env_vars({"OMP_WAIT_POLICY": "PASSIVE"}) == {"OMP_WAIT_POLICY": "PASSIVE"}
