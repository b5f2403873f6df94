"""Per-domain gradients of the alignment layers from an ordinary backward pass, for batches whose
examples come from different domains.

The Ray path gives every micro-batch one domain and reads each domain's gradient as the change of
the accumulated `.grad` (`acodm_ray.train_step`). An ordinary loop's micro-batch mixes domains, so
that difference would be the batch's blend. A linear layer's weight gradient is a sum over tokens
of (output gradient)ᵀ x (input), so the part of it that comes from domain d is that sum over d's
tokens alone. A forward hook on each alignment layer keeps its input, a hook on its output tensor
receives the output gradient during the normal backward, and the product is split by the domain of
each example: no extra backward pass, and the model's own gradients are untouched.

The backward carries whatever the loop scaled the loss by (1 / gradient accumulation, an AMP loss
scale, ...). `begin` is given the denominator the returned loss was divided by, and a hook on the
loss tensor reads the factor applied after it, so the sums are of the unscaled per-token losses'
gradients: divided by each domain's token count they are the gradient of its mean loss.
"""

from __future__ import annotations

import torch
from transformers.pytorch_utils import Conv1D


def _layer(model: torch.nn.Module, name: str, param: torch.Tensor) -> tuple[torch.nn.Module, bool]:
    """(the module owning weight `name`, whether it is transposed like GPT-2's Conv1D)."""
    owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
    if getattr(owner, "weight", None) is not param:
        raise ValueError(
            f"{name!r} is not the weight of a module; per-domain gradients need linear layers"
        )
    if isinstance(owner, torch.nn.Linear):
        return owner, False
    if isinstance(owner, Conv1D):
        return owner, True
    raise ValueError(
        f"per-domain gradients need Linear (or GPT-2 Conv1D) alignment layers, {name!r} is a "
        f"{type(owner).__name__}; set signals.param_suffix to a linear layer's weight"
    )


class DomainGradients:
    """Sums over a step's tokens of each domain's gradient of the alignment weights, [K, P]."""

    def __init__(
        self, model: torch.nn.Module, named_params: list[tuple[str, torch.Tensor]], num_domains: int
    ):
        self.num_domains = int(num_domains)
        self.layers = [_layer(model, n, p) for n, p in named_params]
        sizes = [p.numel() for _, p in named_params]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        device = named_params[0][1].device
        self.sums = torch.zeros(
            self.num_domains, self.offsets[-1], dtype=torch.float32, device=device
        )
        self._rows: list[tuple[int, torch.Tensor]] | None = (
            None  # (domain, example rows) of this micro-batch
        )
        self._denominator = 1.0
        self._factor: torch.Tensor | None = None
        self.handles = [
            module.register_forward_hook(self._forward_hook(i))
            for i, (module, _) in enumerate(self.layers)
        ]

    def begin(
        self, loss: torch.Tensor, domain: torch.Tensor, denominator: float | torch.Tensor
    ) -> None:
        """The micro-batch whose `loss` (its per-token losses summed, divided by `denominator`) is about
        to be back-propagated; `domain` [B] is each example's domain index."""
        domain = domain.reshape(-1)
        present = torch.unique(domain).tolist()
        self._rows = [(int(d), torch.nonzero(domain == d).flatten()) for d in present]
        self._denominator = denominator
        self._factor = None
        if loss.requires_grad:
            loss.register_hook(self._loss_hook)

    def _loss_hook(self, grad: torch.Tensor) -> None:
        # d(what is back-propagated) / d(our loss): 1 / grad_accum, an AMP scale, ... (0: nothing to read)
        self._factor = (
            torch.where(grad != 0, self._denominator / grad, torch.zeros_like(grad))
            .detach()
            .float()
        )

    def _forward_hook(self, index: int):
        def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if module.training and torch.is_grad_enabled() and output.requires_grad:
                x = inputs[0].detach()
                output.register_hook(lambda g: self._accumulate(index, x, g))

        return hook

    def _accumulate(self, index: int, x: torch.Tensor, grad: torch.Tensor) -> None:
        if self._rows is None or self._factor is None:
            return  # a backward this loop did not announce (no domains known)
        _, transposed = self.layers[index]
        lo, hi = self.offsets[index], self.offsets[index + 1]
        x, grad = (
            x.reshape(x.shape[0], -1, x.shape[-1]),
            grad.reshape(grad.shape[0], -1, grad.shape[-1]),
        )
        for d, rows in self._rows:
            xs = x.index_select(0, rows).reshape(-1, x.shape[-1]).float()
            gs = grad.index_select(0, rows).reshape(-1, grad.shape[-1]).float()
            w_grad = xs.T @ gs if transposed else gs.T @ xs  # the weight's own layout
            self.sums[d, lo:hi] += (w_grad.flatten() * self._factor).to(self.sums.device)

    def take(self) -> torch.Tensor:
        """This step's sums (then reset for the next step)."""
        out = self.sums.clone()
        self.sums.zero_()
        self._rows = None
        return out

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
