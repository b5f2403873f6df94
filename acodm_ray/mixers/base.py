"""The one mixer interface: `weights(state) -> w`, `update(signals)`.

Static recipes, the ODM bandit, an exported actor and the online AC-ODM agent all sit behind it,
so the pretraining loop, the env's warm-up and the policy server treat them alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from acodm_ray.step_signals import StepSignals


class Mixer(ABC):
    name: str = "mixer"

    def __init__(self, domains: Sequence[str]) -> None:
        if not domains:
            raise ValueError("a mixer needs at least one domain")
        if len(set(domains)) != len(domains):
            raise ValueError(f"duplicate domain names in {list(domains)}")
        self.domains = list(domains)

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @abstractmethod
    def weights(self, state: np.ndarray | None = None) -> np.ndarray:
        """Domain weights (a distribution over `self.domains`) for the next step."""

    def update(self, signals: StepSignals) -> None:  # noqa: B027  (a no-op unless a mixer learns)
        """Learn from the step just taken (static mixers ignore it)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
