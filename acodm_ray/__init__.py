"""acodm-ray: actor-critic online data mixing (AC-ODM) for LM pretraining, on Ray.

This core package holds everything the jobs, the environment and the RLlib policies share; it
never imports RLlib.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__version__ = "0.1.0"

# How long an idle OpenMP thread busy-waits before it sleeps (GNU OpenMP, the runtime of PyTorch's
# Linux CPU wheels): GOMP_SPINCOUNT spins, 300,000 when neither variable is set (libgomp's default).
OMP_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SPIN_COUNT = "1000"


def bound_omp_spin(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set GOMP_SPINCOUNT=1000 unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT; True if set.

    Why: each torch op that runs on two threads ends at a barrier, and with libgomp's default a
    thread that gets there first spins up to 300,000 times (milliseconds) before it sleeps. On an
    idle machine that costs nothing; on a 2-core machine with any other work running, the spinning
    thread burns the CPU time its partner needs to finish: the demo's proxy and rollout step, 0.42 s
    idle, took 36.9 s beside one busy process (BENCHMARKS.md "Rollout and env-step time under OpenMP
    wait settings"). 1,000 spins (tens of microseconds) measured as fast as the default idle (0.426
    s) and 0.82 s beside the busy process, what sharing a core predicts. Only how threads wait
    changes, not how work is split: results are bit for bit the same. libgomp reads the variable once, when torch loads it: this runs when `acodm_ray` is first
    imported (the jobs and `acodm` import it before torch), and Ray workers started afterwards
    inherit it (cluster workers get it from the jobs' runtime env, `jobs/_common.FORWARDED_ENV`)."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in OMP_WAIT_VARS):
        return False
    environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


bound_omp_spin()
