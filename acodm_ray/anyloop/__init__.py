"""Any mixer from any training loop, no Ray needed: a torch `IterableDataset` over per-domain sources
drawn by the mixer's current weights (`MixingDataset`), the feedback that computes what each mixer
needs from the loop's own losses (`MixingFeedback`), and the Hugging Face Trainer wiring
(`MixingCallback`, `trainer_kwargs`). README: "Use it in your own training loop".

`MixingCallback` / `trainer_kwargs` import transformers' Trainer machinery; they are loaded on
first use so a plain PyTorch loop does not pay for it.
"""

from acodm_ray.anyloop.dataset import EmptySourceError, MixingDataset, MixingStateError
from acodm_ray.anyloop.feedback import MixingFeedback
from acodm_ray.anyloop.mixer import LOOP_MIXERS

__all__ = [
    "MixingDataset",
    "MixingFeedback",
    "MixingCallback",
    "trainer_kwargs",
    "EmptySourceError",
    "MixingStateError",
    "LOOP_MIXERS",
]


def __getattr__(name: str):
    if name in ("MixingCallback", "trainer_kwargs"):
        # lazy: transformers' Trainer machinery, which a plain PyTorch loop never needs
        from acodm_ray.anyloop import hf

        return getattr(hf, name)
    raise AttributeError(name)
