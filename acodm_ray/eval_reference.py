"""signals.score "eval" on the Ray path: each step's reference gradient g_ref, in the weighting and
the geometry the config asks for (docs/method.md, "Named targets").

One component with one job, owned by `LMTrainer`: draw the reference micro-batch (rows from the
evaluation domains, apart from the step's, `MixtureSampler.reference_batch`) and take its gradient
on the alignment matrices with `autograd.grad`, so the step's accumulated `.grad` is untouched;
weight its rows (`signals.eval_weighting`: "loss" plain, "perplexity" by `perplexity_weights`,
"fair" by `target_progress.fair_weights`); combine the workers' gradients and apply AdamW's step
scale (`signals.geometry: adam`); and, under "fair", measure after the step how much it lowered each
row's loss (`TargetProgress`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from acodm_ray.collective import Collective
from acodm_ray.config_train import SignalConfig
from acodm_ray.sampler import MixtureSampler
from acodm_ray.signals import adam_preconditioner, perplexity_weights
from acodm_ray.target_progress import TargetProgress, fair_weights


@dataclass
class Reference:
    """A step's reference micro-batch: g_ref on this worker, each row's own gradient (only under
    signals.eval_weighting "fair") and each row's domain."""

    grad: torch.Tensor  # [P]
    row_grads: torch.Tensor | None  # [R, P]
    rows: np.ndarray  # [R]


def flat(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """One flat float32 CPU vector of the alignment matrices' gradients."""
    return torch.cat([g.detach().flatten().float() for g in grads]).cpu()


class EvalReference:
    """Draws, weights, combines and (under "fair") measures the eval score's reference gradient."""

    def __init__(
        self,
        sig: SignalConfig,
        sampler: MixtureSampler,
        eval_indices: list[int],
        align_params: list[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        collective: Collective,
    ) -> None:
        self.sig, self.sampler, self.eval_indices = sig, sampler, eval_indices
        self.align_params, self.optimizer, self.collective = align_params, optimizer, collective
        self.num_domains = len(sampler.domains)
        self.progress = TargetProgress(self.num_domains)  # what "fair" weights the rows by

    def draw(
        self,
        loss_fn: Callable[..., torch.Tensor],
        autocast: Callable[[], object],
        last_losses: np.ndarray,
        device: torch.device,
    ) -> Reference:
        """This step's reference on this worker: the rows' loss gradient, each row weighted by
        signals.eval_weighting ("perplexity": from the last training losses, "fair": from the
        decreases measured before this step, each row's own gradient kept for `measure`)."""
        batch, rows = self.sampler.reference_batch(self.eval_indices)
        batch = batch.to(device)
        weighting = self.sig.eval_weighting
        with autocast():
            if weighting == "loss":
                return Reference(
                    flat(torch.autograd.grad(loss_fn(batch), self.align_params)), None, rows
                )
            per_row = loss_fn(batch, reduction="none").view(len(rows), -1).mean(dim=1)
        if weighting == "perplexity":
            c = perplexity_weights(last_losses, self.eval_indices)[rows]
            weights = torch.as_tensor(c, dtype=per_row.dtype, device=per_row.device)
            grads = torch.autograd.grad((per_row * weights).mean(), self.align_params)
            return Reference(flat(grads), None, rows)
        row_grads = torch.stack(
            [
                flat(torch.autograd.grad(per_row[r], self.align_params, retain_graph=True))
                for r in range(len(rows))
            ]
        )
        c = fair_weights(self.progress.decrease, self.eval_indices)[rows]
        grad = (torch.as_tensor(c, dtype=torch.float32).unsqueeze(1) * row_grads).mean(dim=0)
        return Reference(grad, row_grads, rows)

    def combined(self, reference: Reference) -> torch.Tensor:
        """g_ref of the step: the workers' mean (each drew its own rows), in AdamW's geometry under
        signals.geometry "adam"."""
        grad = self.collective.sum_(reference.grad) / self.collective.world_size
        precondition = self.preconditioner()
        return grad if precondition is None else (grad.double() * precondition).float()

    def preconditioner(self) -> torch.Tensor | None:
        """signals.geometry "adam": AdamW's per-coordinate step scale on the alignment matrices
        (`signals.adam_preconditioner`), from its state before this step's update; None in the
        plain geometry and before the first update (no second moments yet: plain)."""
        if self.sig.geometry != "adam":
            return None
        states = [self.optimizer.state.get(p, {}) for p in self.align_params]
        if not all("exp_avg_sq" in st for st in states):
            return None
        group = self.optimizer.param_groups[0]
        step = int(float(states[0]["step"]))
        return adam_preconditioner(
            [st["exp_avg_sq"] for st in states], step, group["betas"][1], group["eps"]
        ).cpu()

    def measure(self, reference: Reference, step_grad: torch.Tensor) -> None:
        """signals.eval_weighting "fair" (a reference with `row_grads`): each reference row's
        first-order loss decrease under this step, <G, h_r> with G `step_grad`, the step's
        worker-averaged gradient on the alignment matrices (AdamW's step under signals.geometry
        "adam"), summed per domain across workers into `self.progress`."""
        if reference.row_grads is None:
            raise ValueError("only a 'fair' reference keeps its rows' gradients to measure on")
        step_grad = step_grad.cpu().to(torch.float64)
        precondition = self.preconditioner()
        if precondition is not None:  # the step AdamW takes, momentum aside
            step_grad = step_grad * precondition
        decrease = (reference.row_grads.to(torch.float64) @ step_grad).numpy()
        sums = torch.from_numpy(
            np.bincount(reference.rows, weights=decrease, minlength=self.num_domains)
        )
        counts = torch.from_numpy(
            np.bincount(reference.rows, minlength=self.num_domains).astype(np.float64)
        )
        self.collective.sum_(sums)
        self.collective.sum_(counts)
        self.progress.update(sums.numpy(), counts.numpy())
