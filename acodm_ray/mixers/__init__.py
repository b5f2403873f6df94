"""Mixers behind one interface, and the factory that builds one from a MixerConfig."""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np

from acodm_ray.config import MixerConfig
from acodm_ray.config_train import MixerName
from acodm_ray.mixers.alignment import AlignmentMixer
from acodm_ray.mixers.base import Mixer
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.mixers.static import StaticMixer, file_mixer, natural_mixer, uniform_mixer

MIXERS = get_args(MixerName)  # mixer.name's values
SCORE_MIXERS = (
    "alignment",
)  # mixers that learn from the alignment scores (the step must compute them)


def build_mixer(cfg: MixerConfig, domains: Sequence[str], natural: np.ndarray) -> Mixer:
    """The mixer `cfg.name` over `domains`; `natural` are the corpus's natural proportions."""
    if cfg.name == "uniform":
        return uniform_mixer(domains)
    if cfg.name == "natural":
        return natural_mixer(domains, natural)
    if cfg.name == "file":
        if not cfg.weights_file:
            raise ValueError("mixer.name is 'file' but mixer.weights_file is not set")
        return file_mixer(domains, cfg.weights_file)
    if cfg.name == "odm":
        return ODMMixer(domains, natural, cfg.odm_variant, cfg.odm_alpha)
    if cfg.name == "alignment":
        return AlignmentMixer(
            domains,
            cfg.alignment_mu,
            cfg.alignment_clip_min,
            cfg.alignment_clip_max,
            cfg.alignment_floor,
        )
    raise ValueError(f"unknown mixer {cfg.name!r}; valid mixers are {list(MIXERS)}")


__all__ = [
    "Mixer",
    "StaticMixer",
    "ODMMixer",
    "AlignmentMixer",
    "SCORE_MIXERS",
    "build_mixer",
    "MIXERS",
]
