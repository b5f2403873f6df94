"""The mixing loop every consumer shares: ask the mixer, take a step, let the mixer learn."""

from __future__ import annotations

from collections.abc import Iterator

from acodm_ray.mixers.base import Mixer
from acodm_ray.step_signals import StepSignals
from acodm_ray.train_step import LMTrainer, NonFiniteLossError


def mixing_step(trainer: LMTrainer, mixer: Mixer) -> StepSignals:
    """One step: the mixer's weights for the trainer's state, the step, the mixer's update.

    A NaN/inf loss raises NonFiniteLossError naming the step and domains; the trainer skipped that
    update, so the model and every checkpoint written so far are intact.
    """
    signals = trainer.step(mixer.weights(trainer.last_state))
    if not signals.finite:
        bad = [d for d, x in zip(trainer.domains, signals.losses) if not abs(x) < float("inf")]
        raise NonFiniteLossError(
            f"loss is {signals.loss} at step {signals.step} (domains {bad}); the update was skipped"
        )
    mixer.update(signals)
    return signals


def mixing_loop(trainer: LMTrainer, mixer: Mixer, until_step: int) -> Iterator[StepSignals]:
    """Yield each step's signals (`mixing_step`) until `trainer.step_count == until_step`."""
    while trainer.step_count < until_step:
        yield mixing_step(trainer, mixer)
