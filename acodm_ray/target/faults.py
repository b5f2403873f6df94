"""Test hooks of the target run, set on the driver through ACODM_TARGET_FAULTS (JSON): kill one
worker once at a given step, or the policy server (tests/test_faults.py)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from acodm_ray.policy_client import PolicyClient

log = logging.getLogger("acodm_ray.target")

FAULTS_ENV = (
    "ACODM_TARGET_FAULTS"  # JSON: {"crash": {"rank", "step", "marker"}, "kill_server_at": s}
)


def read_faults() -> dict[str, Any]:
    raw = os.environ.get(FAULTS_ENV)
    return json.loads(raw) if raw else {}


def inject_faults(
    faults: dict[str, Any], rank: int, step: int, client: PolicyClient | None
) -> None:
    """Test hooks (ACODM_TARGET_FAULTS on the driver): kill a worker once, or the policy server."""
    crash = faults.get("crash")
    if crash and rank == int(crash["rank"]) and step == int(crash["step"]):
        marker = Path(crash["marker"])
        if not marker.exists():
            marker.write_text(f"rank {rank} killed at step {step}\n")
            log.warning("fault injection: rank %d exits at step %d", rank, step)
            os._exit(1)
    kill_at = faults.get("kill_server_at")
    if kill_at is not None and rank == 0 and step == int(kill_at) and client is not None:
        log.warning("fault injection: killing the policy server at step %d", step)
        client.kill()
