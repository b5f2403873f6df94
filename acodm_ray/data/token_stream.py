"""TokenStream: one domain's tokens in one split, read as a single array from memory-mapped shards.

A prepared corpus stores each domain's token stream (every document's ids followed by eos, in source
order) cut into shard files. `TokenStream` puts them back together: offset `o` of the stream is
offset `o - start(k)` of the shard `k` that holds it, so a window at offset `o` reads exactly the
tokens it would read from the whole stream in memory, wherever the shard boundaries fall. That is
what keeps the sampler's draws (`MixtureSampler`) identical to the in-memory arrays it used to read.

Shards are opened lazily with `np.memmap` (read-only, `MADV_RANDOM`: windows are drawn at random
offsets, so the kernel's read-ahead would only inflate resident memory), so a process holds only
the pages it touched, whatever the corpus size. A stream pickles as its file list, never its data.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class TokenStream:
    """A read-only 1-D token array over shard files (or in-memory arrays, for tests and tools)."""

    def __init__(
        self,
        paths: Sequence[str | Path] = (),
        counts: Sequence[int] = (),
        dtype: str | np.dtype = "uint16",
        arrays: Sequence[np.ndarray] | None = None,
    ) -> None:
        if arrays is not None:
            self._paths: list[str] = []
            self._maps: list[np.ndarray | None] = [np.asarray(a) for a in arrays]
            counts = [a.shape[0] for a in self._maps]  # type: ignore[union-attr]
            self.dtype = (
                np.result_type(*[a.dtype for a in self._maps]) if arrays else np.dtype(dtype)
            )
        else:
            if len(paths) != len(counts):
                raise ValueError(f"{len(paths)} shard paths but {len(counts)} token counts")
            self._paths = [str(p) for p in paths]
            self._maps = [None] * len(self._paths)
            self.dtype = np.dtype(dtype)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    @classmethod
    def from_array(cls, array: np.ndarray) -> TokenStream:
        """One in-memory array as a stream (synthetic corpora, tests)."""
        array = np.asarray(array)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise TypeError(
                f"a token stream is a 1-D integer array, got {array.dtype} {array.shape}"
            )
        return cls(arrays=[array])

    # ------------------------------------------------------------------ size

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def size(self) -> int:
        return len(self)

    @property
    def num_shards(self) -> int:
        return len(self.counts)

    # ------------------------------------------------------------------ reading

    def shard(self, k: int) -> np.ndarray:
        """Shard `k`'s tokens (a read-only memmap, opened on first use)."""
        array = self._maps[k]
        if array is None:
            array = np.memmap(
                self._paths[k], dtype=self.dtype, mode="r", shape=(int(self.counts[k]),)
            )
            if hasattr(array, "_mmap") and array._mmap is not None and hasattr(mmap, "MADV_RANDOM"):
                array._mmap.madvise(mmap.MADV_RANDOM)
            self._maps[k] = array
        return array

    def __getitem__(self, key: slice) -> np.ndarray:
        """Tokens [start, stop) of the stream (a copy when it spans shards)."""
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a TokenStream is read by contiguous slices: stream[start:stop]")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, stop - 1, side="right")) - 1
        if first == last:
            base = self.starts[first]
            return self.shard(first)[start - base : stop - base]
        pieces = []
        for k in range(first, last + 1):
            base = int(self.starts[k])
            pieces.append(
                self.shard(k)[
                    max(start, base) - base : min(stop, base + int(self.counts[k])) - base
                ]
            )
        return np.concatenate(pieces)

    def windows(self, starts: np.ndarray | Sequence[int], length: int) -> np.ndarray:
        """[len(starts), length] int64: the window of `length` tokens at each start offset."""
        starts = np.asarray(starts, dtype=np.int64)
        if starts.size and (starts.min() < 0 or starts.max() + length > len(self)):
            raise IndexError(
                f"windows of {length} tokens at offsets {int(starts.min())}..{int(starts.max())} "
                f"run past the stream's {len(self)} tokens"
            )
        offsets = np.arange(length, dtype=np.int64)
        if self.num_shards == 1:
            return self.shard(0)[starts[:, None] + offsets].astype(np.int64)
        shard_of = np.searchsorted(self.starts, starts, side="right") - 1
        out = np.empty((starts.size, length), dtype=np.int64)
        inside = starts + length <= self.starts[shard_of + 1]
        for k in np.unique(shard_of[inside]):
            rows = np.flatnonzero(inside & (shard_of == k))
            out[rows] = self.shard(int(k))[(starts[rows] - self.starts[k])[:, None] + offsets]
        for row in np.flatnonzero(~inside):  # a window across a shard boundary (rare)
            out[row] = self[int(starts[row]) : int(starts[row]) + length]
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "a TokenStream is not turned into one array (it may be larger than memory): read "
            "windows (stream.windows) or slices (stream[a:b])"
        )

    # ------------------------------------------------------------------ pickling

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._paths:  # file-backed: pickle the file list, reopen lazily on the other side
            state["_maps"] = [None] * len(self._paths)
        return state

    def __repr__(self) -> str:
        return f"TokenStream({len(self)} tokens in {self.num_shards} shard(s), {self.dtype})"
