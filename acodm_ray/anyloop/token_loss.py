"""Per-example next-token loss of a causal LM, the one number every mixer's feedback starts from.

Split out of `feedback` because it is plain tensor math with no mixing state: `MixingFeedback.loss`
sums it per domain, and it is worth reading (and testing) without the feedback's bookkeeping. Labels
follow Hugging Face's convention (the inputs, shifted inside; `IGNORE_INDEX` marks tokens not
predicted), so a Trainer's batch works unchanged.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # label of a token that is not predicted (Hugging Face's convention)


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-example summed next-token loss [B], per-example predicted-token count [B]) of a causal
    LM whose labels are its inputs (position t predicts label t + 1, as Hugging Face shifts them)."""
    logits, targets = logits[:, :-1].float(), labels[:, 1:]
    per_token = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).reshape(targets.shape)
    mask = targets != IGNORE_INDEX
    return (per_token * mask).sum(dim=1), mask.sum(dim=1)
