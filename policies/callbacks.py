"""What every RLlib algorithm on DataMixingEnv reports about the mix, per iteration.

An env-runner callback reads each step's info and logs, averaged over the iteration's steps:
`mix/entropy` (of the executed weights), `mix/warmup` (share of steps ODM chose), and per domain
index i `mix/weight/i`, `mix/effective/i` (the mix actually trained on, `train.coverage`) and
`mix/score/i` (the reward vector, over the steps that scored domain i). `policies/run.py` names
the domains when it writes iterations.jsonl; TensorBoard gets every scalar as RLlib reports it.

A second callback, `SamplingClock`, logs `clock/first_env_step`: the wall-clock time (Unix seconds)
at which the iteration's first env step completed, the earliest over all env runners. On a cluster
it tells how long a job waited for its env runners (nodes added by an autoscaler, workers started,
the proxy built) before the first proxy optimizer step; `tests/test_autoscaling.py` measures it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

PREFIX = "mix/"
FIRST_STEP = "clock/first_env_step"


class MixingMetrics(RLlibCallback):
    def on_episode_step(self, *, episode, metrics_logger=None, **kwargs: Any) -> None:
        if metrics_logger is None:
            return
        info = episode.get_infos(-1)
        if not isinstance(info, dict) or "weights" not in info:
            return  # the reset info: no step taken yet
        metrics_logger.log_value(PREFIX + "entropy", float(info.get("entropy", 0.0)), reduce="mean")
        metrics_logger.log_value(
            PREFIX + "warmup", float(bool(info.get("warmup", False))), reduce="mean"
        )
        scored = np.asarray(info.get("scored", np.ones_like(info["weights"])))
        for key in ("weights", "effective", "scores"):
            values = np.asarray(info.get(key, ()), dtype=np.float64)
            name = "weight" if key == "weights" else key.rstrip("s") if key == "scores" else key
            for i, v in enumerate(values):
                if key == "scores" and not scored[i] > 0:
                    continue
                metrics_logger.log_value(f"{PREFIX}{name}/{i}", float(v), reduce="mean")


class SamplingClock(RLlibCallback):
    def on_episode_step(self, *, metrics_logger=None, **kwargs: Any) -> None:
        if metrics_logger is not None:
            metrics_logger.log_value(FIRST_STEP, time.time(), reduce="min")


def named_mix_metrics(scalars: dict[str, Any], domains: list[str]) -> dict[str, float]:
    """The iteration's `env_runners/mix/...` scalars with domain names for indices."""
    out: dict[str, float] = {}
    for key, value in scalars.items():
        if not key.startswith("env_runners/" + PREFIX):
            continue
        name = key[len("env_runners/" + PREFIX) :]
        group, _, index = name.rpartition("/")
        if group and index.isdigit() and int(index) < len(domains):
            name = f"{group}/{domains[int(index)]}"
        out[name] = value
    return out
