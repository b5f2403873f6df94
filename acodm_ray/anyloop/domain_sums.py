"""The step's per-domain records in an ordinary training loop: for each training micro-batch, the
summed token loss, the predicted tokens and the sequences of each domain, from the loop's own
per-example losses (`MixingFeedback.loss`), summed over the ranks once per optimizer step.

Held apart from `feedback` because it is the one piece of state that lives between micro-batches:
everything else the feedback computes is per optimizer step."""

from __future__ import annotations

import numpy as np
import torch

from acodm_ray.collective import Collective


class DomainSums:
    """[3, K] float64 sums -- token loss, predicted tokens, sequences per domain -- of the micro-batches
    recorded since the last `clear` (allocated on the first record's device)."""

    def __init__(self, num_domains: int) -> None:
        self.num_domains = num_domains
        self._empty = torch.zeros(3, num_domains, dtype=torch.float64)
        self._sums: torch.Tensor | None = None

    @property
    def recorded(self) -> bool:
        """Whether any micro-batch was recorded since the last `clear`."""
        return self._sums is not None

    def add(self, domain: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """One micro-batch: each example's `domain` index, summed token loss and token count."""
        if domain.min() < 0 or domain.max() >= self.num_domains:
            raise ValueError(
                f"domain index out of range [0, {self.num_domains}): {domain.tolist()}"
            )
        if self._sums is None:
            self._sums = self._empty.clone().to(domain.device)
        self._sums[0].index_add_(0, domain, sums.double())
        self._sums[1].index_add_(0, domain, counts.double())
        self._sums[2].index_add_(0, domain, torch.ones_like(sums, dtype=torch.float64))

    def summed(self, collective: Collective) -> tuple[torch.Tensor, np.ndarray]:
        """(the sums over all ranks, on the CPU; this rank's own share, before that sum). A rank
        that recorded nothing contributes zeros."""
        sums = (self._sums if self._sums is not None else self._empty).cpu().clone()
        own = sums.numpy().copy()
        collective.sum_(sums)
        return sums, own

    def clear(self) -> None:
        self._sums = None
