"""MixingDataset: packed language-modelling examples from per-domain sources, drawn by the mixer's
weights, for any training loop (a torch `IterableDataset`; no Ray).

Each domain's source (a 1-D token array or memmap, a `TokenizedCorpus` stream, a Hugging Face
`datasets` object with an `input_ids` column, or any iterable of token-id sequences) is joined into
one flat token stream (documents separated by eos), and an example is a window of `seq_len` tokens
of one domain, packed across document boundaries: `{"input_ids", "labels", "domain"}` with
`labels == input_ids` (Hugging Face causal LMs shift the labels themselves). Windows are drawn with
replacement at random offsets, like the Ray path's `MixtureSampler`.

Why every example is a pure function of its place in training. Example `p` of optimizer step `s`
on rank `r` draws its domain and its window from a generator seeded with (seed, r, s, p), under the
weights that apply to step `s`: the decision published after step `s - delay` (the initial weights
before that). So
- DataLoader workers never draw the same examples (they build different (s, p)) and the stream is
  the same whatever `num_workers` is: worker w of W builds loader batches w, w + W, ... (the
  DataLoader's in-order round robin);
- DDP ranks draw different streams (r is in the seed);
- `state_dict()` is the seed, the layout and the weights published so far; a dataset that loads it
  continues with exactly the examples the original would have drawn, whatever the DataLoader had
  already prefetched when the state was saved.
A worker that needs the weights of a step not decided yet waits for them (they come through shared
memory); the main process cannot wait for itself, so there such a draw is an error that says to
raise `delay`. `delay=1` (the default) lets a loader draw one step ahead, which the Hugging Face
Trainer does (accelerate fetches the next batch before the current step trains); a plain loop that
fetches each step's batches after the previous step's feedback can use `delay=0`.

Without a feedback attached (`attach`), the dataset is a static mix: every step uses the newest
published weights.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from acodm_ray.data.token_stream import TokenStream
from acodm_ray.errors import AcodmError
from acodm_ray.sampler import WeightsError, check_weights

STATE_FORMAT = 1


class EmptySourceError(AcodmError, ValueError):
    """A domain's source has no tokens, or fewer than one example."""


class MixingStateError(AcodmError, ValueError):
    """A saved mixing state does not fit this dataset (other domains, seed or example length)."""


def _as_ids(item: Any, column: str, domain: str) -> np.ndarray:
    if isinstance(item, Mapping):
        if column not in item:
            raise EmptySourceError(
                f"source of domain {domain!r} yields rows with fields {sorted(item)}, none named {column!r}: "
                f"tokenize it first (datasets' .map) or name the token column with column="
            )
        item = item[column]
    if isinstance(item, torch.Tensor):
        item = item.numpy()
    ids = np.asarray(item)
    if ids.dtype.kind not in "iu":
        raise TypeError(
            f"source of domain {domain!r} yields {ids.dtype} values, not token ids (integers): "
            "tokenize the text first"
        )
    return ids.reshape(-1)


def flatten_source(
    domain: str, source: Any, eos_id: int | None = None, column: str = "input_ids"
) -> np.ndarray:
    """One flat token stream for a domain: a prepared corpus's `TokenStream` (memory-mapped shards)
    or a 1-D integer array is used as it is (a memmap stays a memmap); anything else is read once,
    each document followed by `eos_id` when given."""
    if isinstance(source, TokenStream):
        stream = source
    elif isinstance(source, (np.ndarray, torch.Tensor)) and np.asarray(source).ndim == 1:
        stream = source.numpy() if isinstance(source, torch.Tensor) else source
        if stream.dtype.kind not in "iu":
            raise TypeError(
                f"token stream of domain {domain!r} has dtype {stream.dtype}, not integer token ids"
            )
    else:
        column_names = getattr(source, "column_names", None)
        if isinstance(column_names, list) and column not in column_names:
            raise EmptySourceError(
                f"dataset of domain {domain!r} has columns {column_names}, none named {column!r}: "
                f"tokenize it first (datasets' .map) or name the token column with column="
            )
        if not isinstance(source, Iterable):
            raise TypeError(
                f"source of domain {domain!r} is a {type(source).__name__}, not a token array, "
                "a datasets object or an iterable of token-id sequences"
            )
        pieces: list[np.ndarray] = []
        eos = None if eos_id is None else np.array([eos_id])
        for item in source:
            pieces.append(_as_ids(item, column, domain))
            if eos is not None:
                pieces.append(eos)
        stream = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
    if stream.size == 0:
        raise EmptySourceError(f"source of domain {domain!r} has no examples (0 tokens)")
    return stream


class MixingDataset(IterableDataset):
    """Infinite stream of packed examples whose domains follow the published weights (module docstring)."""

    def __init__(
        self,
        sources: Mapping[str, Any],
        seq_len: int,
        weights: Any = None,
        seed: int = 0,
        delay: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
        eos_id: int | None = None,
        column: str = "input_ids",
        batch_size: int = 1,
        grad_accum: int = 1,
        capacity: int = 1024,
        wait_timeout_s: float = 600.0,
    ) -> None:
        super().__init__()
        if not isinstance(sources, Mapping) or not sources:
            raise ValueError("sources must be a non-empty mapping of domain name -> source")
        if seq_len < 1 or delay < 0 or capacity < 2:
            raise ValueError(
                f"need seq_len >= 1, delay >= 0 and capacity >= 2, got {seq_len}, {delay}, {capacity}"
            )
        self.domains = [str(d) for d in sources]
        if len(set(self.domains)) != len(self.domains):
            raise ValueError(f"duplicate domain names in {self.domains}")
        self.seq_len, self.seed, self.delay = int(seq_len), int(seed), int(delay)
        self.streams = [flatten_source(d, sources[d], eos_id, column) for d in self.domains]
        for domain, stream in zip(self.domains, self.streams):
            if stream.size < self.seq_len:
                raise EmptySourceError(
                    f"source of domain {domain!r} has {stream.size} tokens, fewer than one "
                    f"example of seq_len = {self.seq_len}"
                )
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.configure(batch_size, grad_accum)
        self.wait_timeout_s = float(wait_timeout_s)
        self.follow = False  # set by `attach`: draws wait for each step's own weights
        self.start_step: int | None = (
            None  # None: a new iteration starts at the steps published so far
        )
        K = len(self.domains)
        # decisions reach DataLoader workers through shared memory: a ring of the newest `capacity`
        # and the count published; the main process keeps all of them (`history`, for state_dict)
        self._ring = torch.zeros(capacity, K, dtype=torch.float64).share_memory_()
        self._count = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.history: list[np.ndarray] = []
        self._cache: tuple[int, np.ndarray, int] | None = (
            None  # (decision index, its cdf, last domain > 0)
        )
        self.publish(np.full(K, 1.0 / K) if weights is None else weights)

    @classmethod
    def from_corpus(
        cls, corpus: Any, seq_len: int, split: str = "train", **kwargs: Any
    ) -> MixingDataset:
        """Over a `TokenizedCorpus`'s per-domain streams (already joined by eos): a prepared
        corpus (`acodm_ray.data.load.load_tokenized`) is read from its memory-mapped shards."""
        return cls({d: getattr(corpus, split)[d] for d in corpus.domains}, seq_len, **kwargs)

    # ------------------------------------------------------------------ configuration

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    def natural_proportions(self) -> np.ndarray:
        """Tokens of each domain / all tokens: the "natural" mix, and ODM's starting weights."""
        sizes = np.array([s.size for s in self.streams], dtype=np.float64)
        return sizes / sizes.sum()

    def configure(
        self,
        batch_size: int,
        grad_accum: int,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        """How the loader groups examples: `batch_size` per loader batch, `grad_accum` loader batches
        per optimizer step. Call before iterating (workers copy the dataset when iteration starts)."""
        if batch_size < 1 or grad_accum < 1:
            raise ValueError(
                f"batch_size and grad_accum must be >= 1, got {batch_size}, {grad_accum}"
            )
        self.batch_size, self.grad_accum = int(batch_size), int(grad_accum)
        if rank is not None or world_size is not None:
            self.rank, self.world_size = resolve_rank(rank, world_size)

    def attach(self, initial_weights: Any) -> None:
        """A feedback path drives this dataset from now on: `initial_weights` are the decision before
        the first step, and every step waits for the weights meant for it."""
        if len(self.history) > 1:
            raise RuntimeError("attach a feedback before the first step is published")
        self.history.clear()
        self._count.zero_()
        self._cache = None
        self.publish(initial_weights)
        self.follow = True

    # ------------------------------------------------------------------ weights

    @property
    def steps_published(self) -> int:
        """Optimizer steps whose decision has been published (decision 0 is the initial weights)."""
        return len(self.history) - 1

    def publish(self, weights: Any) -> np.ndarray:
        """The weights decided after the step just taken (refused unless a distribution)."""
        try:
            w = check_weights(weights, self.domains)
        except WeightsError as err:
            raise WeightsError(f"mixing weights refused: {err}") from err
        self._append(w)
        return w

    def _append(self, w: np.ndarray) -> None:
        i = len(self.history)
        self.history.append(np.array(w, dtype=np.float64))
        self._ring[i % self._ring.shape[0]] = torch.from_numpy(self.history[-1])
        self._count[0] = i + 1

    def weights_for_step(self, step: int) -> np.ndarray:
        """The weights step `step` (0-based) draws with: the decision after step - delay."""
        return self._decision(self._decision_index(step), step)

    def _decision_index(self, step: int) -> int:
        i = max(0, step - self.delay)
        return i if self.follow else min(i, self._published() - 1)

    def _decision(self, i: int, step: int) -> np.ndarray:
        if i < len(self.history):
            return self.history[i]
        if get_worker_info() is None:
            raise RuntimeError(
                f"step {step} needs the weights decided after step {i}, which are not published yet: this loop "
                f"draws examples more than delay = {self.delay} step(s) ahead of its feedback; create the "
                f"MixingDataset with a larger delay (the Hugging Face Trainer draws one step ahead: delay >= 1)"
            )
        deadline = time.monotonic() + self.wait_timeout_s
        while self._published() <= i:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no mixing weights for step {step} after {self.wait_timeout_s:.0f} s: is the "
                    "feedback (MixingFeedback.step or the MixingCallback) running?"
                )
            time.sleep(0.0005)
        capacity = self._ring.shape[0]
        if i < self._published() - capacity:
            raise RuntimeError(
                f"a DataLoader worker fell more than {capacity} decisions behind (step {step}); "
                "create the dataset with a larger capacity"
            )
        return self._ring[i % capacity].numpy().copy()

    def _published(self) -> int:
        return int(self._count[0])

    # ------------------------------------------------------------------ drawing

    def example(self, step: int, position: int) -> dict[str, Any]:
        """Example `position` of optimizer step `step` on this rank."""
        i = self._decision_index(step)
        if self._cache is None or self._cache[0] != i:
            w = self._decision(i, step)
            self._cache = (i, np.cumsum(w), int(np.flatnonzero(w > 0)[-1]))
        _, cdf, last = self._cache
        rng = np.random.default_rng([self.seed, self.rank, step, position])
        domain = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), last)
        stream = self.streams[domain]
        start = int(rng.integers(0, stream.size - self.seq_len + 1))
        ids = torch.from_numpy(np.asarray(stream[start : start + self.seq_len], dtype=np.int64))
        return {"input_ids": ids, "labels": ids.clone(), "domain": domain}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start = self.steps_published if self.start_step is None else int(self.start_step)
        B, per_step = self.batch_size, self.grad_accum
        q = 0
        while True:
            g = q * workers + worker  # this worker's q-th batch is the loader's batch g
            step, batch = start + g // per_step, g % per_step
            for i in range(B):
                yield self.example(step, batch * B + i)
            q += 1

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict[str, Any]:
        """Everything the continuation depends on (loads with torch's weights_only=True)."""
        return {
            "format": STATE_FORMAT,
            "domains": list(self.domains),
            "seed": self.seed,
            "seq_len": self.seq_len,
            "delay": self.delay,
            "rank": self.rank,
            "decisions": torch.from_numpy(np.stack(self.history)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["domains"]) != self.domains:
            raise MixingStateError(
                f"mixing state is for domains {list(state['domains'])}, this dataset has "
                f"{self.domains}"
            )
        for key in ("seed", "seq_len", "delay"):
            if int(state[key]) != getattr(self, key):
                raise MixingStateError(
                    f"mixing state has {key} = {state[key]}, this dataset {getattr(self, key)}: "
                    "the continuation would not be the same examples"
                )
        decisions = state["decisions"].numpy()
        if decisions.ndim != 2 or decisions.shape[1] != self.num_domains or decisions.shape[0] < 1:
            raise MixingStateError(
                f"mixing state holds decisions of shape {tuple(decisions.shape)}"
            )
        self.history.clear()
        self._count.zero_()
        for w in decisions:
            check_weights(w, self.domains)
            self._append(w)  # bit for bit: renormalising again could move the last digit
        self._cache = None


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): the arguments, else torch.distributed's, else $RANK / $WORLD_SIZE
    (torchrun, accelerate), else a single process."""
    import os

    import torch.distributed as dist

    if rank is None:
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
        else:
            rank = int(os.environ.get("RANK", 0))
    if world_size is None:
        if dist.is_available() and dist.is_initialized():
            world_size = dist.get_world_size()
        else:
            world_size = int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size = {world_size})")
    return int(rank), int(world_size)
