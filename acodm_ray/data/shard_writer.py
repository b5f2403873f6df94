"""ShardWriter: appends each domain's tokens to fixed-size shard files, and can be resumed.

The prepare job streams tokenized documents in source order; the writer appends them to the open
shard of their (split, domain) and closes a shard (sha256 and all) every `shard_tokens` tokens, so
a domain's shards are its token stream cut into equal pieces. `state()` is everything needed to
continue after a crash: the closed shards and, for each open one, how many tokens and documents it
held at that moment. `restore` truncates each open shard back to that length (whatever was written
after the last checkpoint is dropped, and the caller re-reads it), so an interrupted prepare ends
with the same bytes as one that ran through.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.data.manifest import ShardInfo, file_sha256, shard_path


class _OpenShard:
    def __init__(
        self, root: Path, split: str, domain: str, index: int, tokens: int = 0, documents: int = 0
    ):
        self.file = shard_path(split, domain, index)
        self.path = root / self.file
        self.index, self.tokens, self.documents = index, tokens, documents
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a new shard starts empty ("wb"); a restored one is reopened and cut back by `seek_end`
        self.handle = open(self.path, "r+b" if tokens else "wb")  # closed by ShardWriter._close

    def seek_end(self, itemsize: int) -> None:
        self.handle.truncate(self.tokens * itemsize)
        self.handle.seek(self.tokens * itemsize)


class ShardWriter:
    def __init__(self, root: Path, dtype: str, shard_tokens: int) -> None:
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens must be >= 1, got {shard_tokens}")
        self.root = Path(root)
        self.dtype = np.dtype(dtype)
        self.shard_tokens = int(shard_tokens)
        self.closed: list[ShardInfo] = []
        self.open: dict[tuple[str, str], _OpenShard] = {}
        self.next_index: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ writing

    def append(self, split: str, domain: str, ids: np.ndarray, doc_lengths: np.ndarray) -> None:
        """Append whole documents (`ids` is their tokens back to back, eos included; `doc_lengths`
        the length of each), cutting shards wherever `shard_tokens` falls."""
        ids = np.ascontiguousarray(ids, dtype=self.dtype)
        ends = np.cumsum(np.asarray(doc_lengths, dtype=np.int64))
        if ends.size and ends[-1] != ids.size:
            raise ValueError(
                f"document lengths sum to {int(ends[-1])} but {ids.size} tokens were given"
            )
        key = (split, domain)
        done = 0
        while done < ids.size:
            shard = self.open.get(key) or self._new_shard(key)
            take = min(self.shard_tokens - shard.tokens, ids.size - done)
            shard.handle.write(ids[done : done + take].tobytes())
            shard.documents += int(np.count_nonzero((ends > done) & (ends <= done + take)))
            shard.tokens += take
            done += take
            if shard.tokens == self.shard_tokens:
                self._close(key)

    def _new_shard(self, key: tuple[str, str]) -> _OpenShard:
        index = self.next_index.get(key, 0)
        self.next_index[key] = index + 1
        shard = self.open[key] = _OpenShard(self.root, *key, index)
        return shard

    def _close(self, key: tuple[str, str]) -> None:
        shard = self.open.pop(key)
        shard.handle.close()
        self.closed.append(
            ShardInfo(
                key[0], key[1], shard.file, shard.tokens, shard.documents, file_sha256(shard.path)
            )
        )

    def finish(self) -> list[ShardInfo]:
        """Close every open shard (the last, shorter shard of each domain); the closed shards."""
        for key in list(self.open):
            self._close(key)
        return list(self.closed)

    # ------------------------------------------------------------------ checkpoints

    def flush(self) -> None:
        for shard in self.open.values():
            shard.handle.flush()
            os.fsync(shard.handle.fileno())

    def state(self) -> dict[str, Any]:
        """What `restore` needs (call `flush` first): JSON-serialisable."""
        return {
            "closed": [asdict(s) for s in self.closed],
            "open": [[*key, s.index, s.tokens, s.documents] for key, s in self.open.items()],
            "next_index": [[*key, n] for key, n in self.next_index.items()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state`: open shards are cut back to what they held at that checkpoint."""
        self.closed = [ShardInfo(**s) for s in state["closed"]]
        self.next_index = {(split, domain): int(n) for split, domain, n in state["next_index"]}
        self.open = {}
        for split, domain, index, tokens, documents in state["open"]:
            shard = _OpenShard(self.root, split, domain, int(index), int(tokens), int(documents))
            if shard.path.stat().st_size < tokens * self.dtype.itemsize:
                raise OSError(f"open shard {shard.path} is shorter than its checkpoint says")
            shard.seek_end(self.dtype.itemsize)
            self.open[(split, domain)] = shard

    def abandon(self) -> None:
        """Close the open files without closing the shards (an interrupted prepare keeps them)."""
        for shard in self.open.values():
            shard.handle.close()
        self.open = {}
