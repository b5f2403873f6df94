"""Cross-worker reductions over torch.distributed, for every loop that trains on several ranks.

The Ray Train target workers (`acodm_ray.target`) and the any-loop feedback path
(`acodm_ray.anyloop.feedback`) sum per-domain statistics and broadcast rank 0's weights through
these; one process uses `LocalCollective`, where every operation is a no-op. `Collective`, the
interface `LMTrainer` reduces through (a single process by default), lives here with them, so the
training step depends on the reductions and not the other way round.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class Collective:
    """Cross-worker reductions. The default is a single process: nothing to reduce."""

    world_size: int = 1

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor


class TorchCollective(Collective):
    """`Collective` over torch.distributed (the process group Ray Train's TorchTrainer, torchrun or
    accelerate set up).

    With nccl, CPU tensors (the trainer's per-domain sums) go through the worker's GPU."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.dist = dist
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        self.comm_device = (
            torch.device(device) if dist.get_backend() == "nccl" else torch.device("cpu")
        )

    def _apply(self, tensor: torch.Tensor, op) -> torch.Tensor:
        if tensor.device == self.comm_device:
            op(tensor)
            return tensor
        tmp = tensor.to(self.comm_device)
        op(tmp)
        tensor.copy_(tmp)
        return tensor

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._apply(tensor, lambda t: self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM))

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        return self._apply(tensor, lambda t: self.dist.broadcast(t, src=src))

    def same_on_all(self, tensor: torch.Tensor) -> bool:
        """Whether `tensor` is bitwise the same on every rank (max and min across ranks agree)."""
        hi, lo = tensor.clone(), tensor.clone()
        self._apply(hi, lambda t: self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX))
        self._apply(lo, lambda t: self.dist.all_reduce(t, op=self.dist.ReduceOp.MIN))
        return bool(torch.equal(hi, lo))


class LocalCollective(Collective):
    """One worker: broadcasts and checks are no-ops."""

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        return tensor

    def same_on_all(self, tensor: torch.Tensor) -> bool:
        return True


def default_collective(device: torch.device | str = "cpu") -> Collective:
    """A `TorchCollective` when a torch.distributed process group is up, else `LocalCollective`."""
    if dist.is_available() and dist.is_initialized():
        return TorchCollective(device)
    return LocalCollective()
