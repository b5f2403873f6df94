"""signals.score "eval" in your own training loop: the gradient of one reference micro-batch drawn
from the domains you evaluate on (`MixingFeedback(eval_domains=...)`).

The Ray path draws the reference micro-batch inside its training step, before the optimizer step
(`acodm_ray.eval_reference.EvalReference.draw`). Here the loop is yours, so `MixingFeedback.step`
draws it after your optimizer step: `batch_size` windows, each from a domain drawn uniformly from the evaluated ones, by
a generator keyed on (seed, rank, step) apart from every training example's, through your model's
own forward (unwrapped from DistributedDataParallel, so no gradient is synchronised), and takes the
gradient of their mean next-token loss on the alignment matrices with `torch.autograd.grad`: your
parameters' `.grad` are not touched, and the per-domain gradient hooks ignore this pass (they only
record a backward that `MixingFeedback.loss` announced). Each rank draws its own rows; the ranks'
gradients are averaged. The cost: one more forward and backward of one batch per optimizer step.
What differs from the Ray path: the reference sees the parameters one optimizer step later than the
per-domain gradients it is compared with (a first-order-small difference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from acodm_ray.anyloop.token_loss import token_losses
from acodm_ray.config_train import SignalConfig
from acodm_ray.named_targets import reshapes_eval_score

REFERENCE_KEY = (
    0x5EF  # in the generator's key: the reference rows never repeat a training example's
)


def check_loop_eval_settings(sig: SignalConfig) -> SignalConfig:
    """`sig`, after refusing the eval-score settings only the Ray path computes (signals.eval_weighting
    other than "loss", signals.geometry other than "plain"): asked of your loop they would be
    ignored."""
    if reshapes_eval_score(sig):
        raise ValueError(
            f"signals.eval_weighting {sig.eval_weighting!r} and signals.geometry {sig.geometry!r}: "
            "your own loop computes the eval score with the defaults only (eval_weighting 'loss', "
            "geometry 'plain'); the other choices run on the Ray path (LMTrainer)"
        )
    return sig


class ReferenceGradient:
    """g_ref [P] of a step: the mean next-token loss's gradient of `rows` windows of the evaluated
    domains `eval_indices` of `dataset`, with respect to `params`."""

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Any,
        eval_indices: Sequence[int],
        params: list[torch.Tensor],
        rows: int,
        seed: int,
    ) -> None:
        if not eval_indices:
            raise ValueError("a reference micro-batch needs at least one evaluated domain")
        self.model, self.dataset, self.params = model, dataset, list(params)
        self.eval_indices = np.asarray(eval_indices, dtype=np.int64)
        self.rows, self.seed = int(rows), int(seed)

    def draw(self, step: int, rank: int) -> tuple[torch.Tensor, np.ndarray]:
        """([rows, seq_len] token ids, [rows] the domain of each row) of step `step` on `rank`: each
        row's domain uniform over the evaluated ones (without replacement while there are enough),
        its window at a uniform offset of that domain's stream."""
        rng = np.random.default_rng([self.seed, rank, step, REFERENCE_KEY])
        pool = self.eval_indices
        domains = rng.choice(pool, size=self.rows, replace=self.rows > len(pool))
        seq_len = self.dataset.seq_len
        windows = []
        for d in domains:
            stream = self.dataset.streams[int(d)]
            start = int(rng.integers(0, stream.size - seq_len + 1))
            windows.append(np.asarray(stream[start : start + seq_len], dtype=np.int64))
        return torch.from_numpy(np.stack(windows)), domains

    def __call__(self, step: int, rank: int) -> torch.Tensor:
        ids, _ = self.draw(step, rank)
        base = getattr(self.model, "module", self.model)  # DDP's own forward would sync grads
        device = self.params[0].device
        ids = ids.to(device)
        with torch.enable_grad():
            out = base(input_ids=ids)
            logits = out["logits"] if isinstance(out, Mapping) else getattr(out, "logits", out)
            sums, counts = token_losses(logits, ids)
            loss = sums.sum() / counts.sum().clamp(min=1)
            grads = torch.autograd.grad(loss, self.params)
        return torch.cat([g.detach().flatten().float() for g in grads]).cpu()
