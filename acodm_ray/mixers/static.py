"""Static recipes: uniform, natural proportions, and fixed weights from a file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from acodm_ray.mixers.base import Mixer
from acodm_ray.sampler import check_weights, weights_from_mapping


class StaticMixer(Mixer):
    """Always the same weights."""

    def __init__(self, domains: Sequence[str], weights: np.ndarray, name: str = "static") -> None:
        super().__init__(domains)
        self._weights = check_weights(weights, self.domains)
        self.name = name

    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        return self._weights.copy()


def uniform_mixer(domains: Sequence[str]) -> StaticMixer:
    return StaticMixer(domains, np.full(len(domains), 1.0 / len(domains)), name="uniform")


def natural_mixer(domains: Sequence[str], proportions: np.ndarray) -> StaticMixer:
    return StaticMixer(domains, proportions, name="natural")


def read_weights_file(path: str | Path, domains: Sequence[str]) -> np.ndarray:
    """A YAML or JSON mapping {domain: weight}; unknown/missing domains and non-distributions refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"weights file {path} cannot be parsed: {err}") from err
    if not isinstance(data, dict) or not data:
        raise ValueError(f"weights file {path} must hold a mapping of domain -> weight")
    try:
        values = {str(k): float(v) for k, v in data.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"weights file {path} has a non-numeric weight: {err}") from err
    try:
        return weights_from_mapping(values, domains)
    except ValueError as err:
        raise type(err)(f"weights file {path}: {err}") from err


def file_mixer(domains: Sequence[str], path: str | Path) -> StaticMixer:
    return StaticMixer(domains, read_weights_file(path, domains), name="file")
