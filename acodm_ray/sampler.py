"""MixtureSampler: decides which domain each micro-batch of a step comes from, then draws random
windows of that domain's token stream.

How the micro-batches of a step are given to domains (`train.coverage`, `allocate`):
- "iid": each of the M micro-batches draws its domain i.i.d. from the weights, each counts 1/M in
  the step's loss. With M = 4 and K = 7 at most 4 domains are seen (and scored) per step.
- "forced" (the AC-ODM reference code): one micro-batch per domain, the other M - K drawn i.i.d.
  from the weights, each counting 1/M. Every domain is scored every step, but the mix actually
  trained on, n_i / M, is flatter than the weights.
- "weighted": one micro-batch per domain plus the other M - K given out in proportion to the
  weights (largest remainder), and domain i's micro-batches count w_i / n_i in the step's loss. Every
  domain is scored every step AND the step's gradient is exactly sum_i w_i g_i: the effective mix
  is the weights themselves.
`effective_mix` says, for any coverage, how much each domain counted in the step's loss.

One domain per micro-batch is what lets the training step read each domain's gradient without an
extra backward pass (docs/method.md). Two random generators keep distributed runs consistent: the domain
plan uses a generator seeded the same on every worker (all workers train the same domains in a
step), the windows use one seeded per rank (workers see different text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import get_args

import numpy as np
import torch

from acodm_ray.config_train import Coverage
from acodm_ray.data.token_stream import TokenStream
from acodm_ray.errors import AcodmError


def as_stream(stream: TokenStream | np.ndarray) -> TokenStream:
    """A domain's tokens as a TokenStream (memory-mapped shards; an in-memory array is wrapped)."""
    return stream if isinstance(stream, TokenStream) else TokenStream.from_array(stream)


class WeightsError(AcodmError, ValueError):
    """Domain weights that are not a distribution over the sampler's domains."""


def check_weights(
    weights: Sequence[float] | np.ndarray, domains: Sequence[str], atol: float = 1e-4
) -> np.ndarray:
    """Return `weights` as float64 if they are a distribution over `domains`, else raise."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] != len(domains):
        raise WeightsError(
            f"weights have shape {tuple(w.shape)} but there are {len(domains)} domains {list(domains)}"
        )
    if not np.all(np.isfinite(w)):
        bad = [d for d, x in zip(domains, w) if not np.isfinite(x)]
        raise WeightsError(f"weights are not finite for domain(s) {bad}: {w.tolist()}")
    if np.any(w < 0):
        bad = [d for d, x in zip(domains, w) if x < 0]
        raise WeightsError(f"weights are negative for domain(s) {bad}: {w.tolist()}")
    total = float(w.sum())
    if abs(total - 1.0) > atol:
        raise WeightsError(f"weights sum to {total:.6f}, not 1: {w.tolist()}")
    return w / total


def weights_from_mapping(mapping: dict[str, float], domains: Sequence[str]) -> np.ndarray:
    """Order a {domain: weight} mapping by `domains`, refusing unknown or missing domains."""
    unknown = sorted(set(mapping) - set(domains))
    if unknown:
        raise WeightsError(f"unknown domain(s) {unknown}; the corpus has {list(domains)}")
    missing = [d for d in domains if d not in mapping]
    if missing:
        raise WeightsError(f"no weight given for domain(s) {missing}")
    return check_weights([float(mapping[d]) for d in domains], domains)


COVERAGES = get_args(Coverage)  # train.coverage's values


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total`, proportional to `weights` (Hamilton's method): floor of
    total * w, then the leftover units to the largest fractional parts (lower index first on ties)."""
    quota = np.asarray(weights, dtype=np.float64) * total
    counts = np.floor(quota + 1e-12).astype(np.int64)
    left = int(total - counts.sum())
    if left > 0:
        order = np.lexsort((np.arange(len(quota)), -(quota - counts)))  # largest remainder first
        counts[order[:left]] += 1
    return counts


def effective_mix(plan: np.ndarray, loss_weights: np.ndarray, num_domains: int) -> np.ndarray:
    """How much each domain counted in the step's loss: sum of its micro-batches' loss weights."""
    return np.bincount(
        np.asarray(plan, dtype=np.int64), weights=loss_weights, minlength=num_domains
    )


class MixtureSampler:
    def __init__(
        self,
        streams: dict[str, np.ndarray],
        domains: Sequence[str],
        seq_len: int,
        micro_batch_size: int,
        seed: int,
        rank: int = 0,
    ) -> None:
        self.domains = list(domains)
        if len(set(self.domains)) != len(self.domains):
            raise ValueError(f"duplicate domain names in {self.domains}")
        missing = [d for d in self.domains if d not in streams]
        if missing:
            raise ValueError(f"no token stream for domain(s) {missing}")
        self.seq_len = seq_len
        self.micro_batch_size = micro_batch_size
        for domain in self.domains:
            n = len(streams[domain])
            if n < seq_len + 1:
                raise ValueError(
                    f"domain {domain!r} has {n} tokens, fewer than one training sequence "
                    f"(seq_len + 1 = {seq_len + 1})"
                )
        self.streams = [as_stream(streams[d]) for d in self.domains]
        self.plan_rng = np.random.default_rng([seed, 0])
        self.data_rng = np.random.default_rng([seed, 1, rank])
        self.reference_rng = np.random.default_rng(
            [seed, 2, rank]
        )  # apart: the step's draws stay as they were

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def plan(self, weights: np.ndarray, num_micro_batches: int) -> np.ndarray:
        """Domain index of each micro-batch of the next step, drawn i.i.d. from `weights`."""
        w = check_weights(weights, self.domains)
        return self.plan_rng.choice(self.num_domains, size=num_micro_batches, p=w)

    def allocate(
        self, weights: np.ndarray, num_micro_batches: int, coverage: str = "iid"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(domain of each micro-batch [M], its weight in the step's loss [M], summing to 1) under
        `coverage` (module docstring)."""
        w = check_weights(weights, self.domains)
        M, K = int(num_micro_batches), self.num_domains
        if coverage == "iid":
            plan = self.plan_rng.choice(K, size=M, p=w)
            return plan, np.full(M, 1.0 / M)
        if coverage not in COVERAGES:
            raise ValueError(f"unknown coverage {coverage!r}; choose one of {list(COVERAGES)}")
        if M < K:
            raise ValueError(
                f"train.coverage {coverage!r} gives every domain a micro-batch, but train.grad_accum = {M} is "
                f"smaller than the {K} domains: raise train.grad_accum to at least {K} or set train.coverage: iid"
            )
        if coverage == "forced":
            plan = np.concatenate([np.arange(K), self.plan_rng.choice(K, size=M - K, p=w)])
            return plan, np.full(M, 1.0 / M)
        counts = 1 + largest_remainder(w, M - K)
        plan = np.repeat(np.arange(K), counts)
        return plan, (w / counts)[plan]

    def batch(self, domain_index: int) -> torch.Tensor:
        """[micro_batch_size, seq_len + 1] windows of one domain (inputs and shifted labels)."""
        stream = self.streams[domain_index]
        starts = self.data_rng.integers(0, len(stream) - self.seq_len, size=self.micro_batch_size)
        return torch.from_numpy(stream.windows(starts, self.seq_len + 1))

    def reference_batch(self, domain_indices: Sequence[int]) -> tuple[torch.Tensor, np.ndarray]:
        """([micro_batch_size, seq_len + 1] windows, [micro_batch_size] the domain of each row): each
        row from a domain drawn uniformly from `domain_indices` (without replacement while there are
        enough of them), from a generator of its own: the reference micro-batch of
        `signals.score: eval`, independent of the step's."""
        pool = np.asarray(domain_indices)
        domains = self.reference_rng.choice(
            pool, size=self.micro_batch_size, replace=self.micro_batch_size > len(pool)
        )
        rows = []
        for d in domains:
            stream = self.streams[int(d)]
            start = int(self.reference_rng.integers(0, len(stream) - self.seq_len))
            rows.append(stream.windows([start], self.seq_len + 1)[0])
        return torch.from_numpy(np.stack(rows)), domains.astype(np.int64)

    def state_dict(self) -> dict[str, str]:
        """JSON strings, so checkpoints load with torch's `weights_only=True`."""
        return {
            "plan_rng": json.dumps(self.plan_rng.bit_generator.state),
            "data_rng": json.dumps(self.data_rng.bit_generator.state),
            "reference_rng": json.dumps(self.reference_rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, str]) -> None:
        self.plan_rng.bit_generator.state = json.loads(state["plan_rng"])
        self.data_rng.bit_generator.state = json.loads(state["data_rng"])
        if "reference_rng" in state:  # absent in checkpoints written before signals.score "eval"
            self.reference_rng.bit_generator.state = json.loads(state["reference_rng"])
