"""Log set-up for the jobs: readable lines, and Ray's notices that tell our users nothing, dropped.

`quiet_known_noise()` installs a filter on the exact Ray loggers that emit these messages (only
records whose text matches are dropped; every other warning of those modules still shows):
  - "You are running ACODM / SAC on the new API stack!": the new stack is what we use, on purpose;
  - RLlib's `RLModule(config=...)` deprecation notice, raised inside RLlib's own SAC-family
    construction path, which a user cannot act on;
  - "Install gputil for GPU system monitoring.": Tune's optional GPU monitor, not used here;
  - "Progress bars disabled": the corpus prepare turns Ray Data's bars off and shows its own;
  - "Failed to query Ray Train Controller actor state": Ray Train's placement-group cleaner asks the
    dashboard's State API every few seconds, and local runs start Ray without a dashboard.
The jobs call it in the driver and register it as Ray's `worker_process_setup_hook`, so env runners,
Ray Train workers and Ray Train's own actors drop the same lines.
"""

from __future__ import annotations

import logging

HOOK = "acodm_ray.logs.quiet_known_noise"

KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    "ray.rllib.algorithms.algorithm_config": ("on the new API stack",),
    "ray.rllib.algorithms.sac.sac": ("on the new API stack",),
    "ray._common.deprecation": ("RLModule(config=",),
    "ray.rllib.utils.deprecation": ("RLModule(config=",),
    "ray.tune.utils.util": ("Install gputil",),
    # the prepare job turns Ray Data's bars off on purpose (it shows one bar of its own)
    "ray.data._internal.progress": ("Progress bars disabled",),
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": (
        "Failed to query Ray Train Controller actor state",
    ),
}


class _DropMatching(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not any(f in text for f in self.fragments)


def quiet_known_noise() -> None:
    """Drop the messages of `KNOWN_NOISE` from their loggers (idempotent)."""
    for name, fragments in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(fragments))


def setup_job_logging() -> None:
    """What every job entry point calls first: INFO lines as `LEVEL name: message`, noise dropped."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_known_noise()
