"""The Hugging Face `Trainer` wiring: a `TrainerCallback` plus the `compute_loss_func` that records
per-example losses.

    feedback = MixingFeedback(model, dataset, total_steps=args.max_steps, mixer="odm")
    trainer = Trainer(model=model, args=args, train_dataset=dataset, **trainer_kwargs(feedback))

What each hook is for:
- `compute_loss_func=feedback.compute_loss`: the Trainer's default loss is one number per batch;
  the mixers need it per domain. The `domain` field reaches the model's forward and is taken out
  there by the feedback's pre-hook, so the model never sees it;
- `on_train_begin`: connects the feedback to the Trainer's process group (every rank then trains
  on rank 0's weights), tells the dataset the Trainer's batch size and loader batches per
  optimizer step, and on a resumed run restores the mixing state saved with the checkpoint;
- `on_pre_optimizer_step`: the learning rate this step is taken with (the alignment mixer's step);
- `on_step_end`: `feedback.step()` -- signals, mixer update, next weights;
- `on_save`: the mixing state next to the Trainer's checkpoint (`acodm_mixing.pt`).

`TrainingArguments(remove_unused_columns=False)` is required: otherwise the Trainer's collator drops
the `domain` field, which the model's signature does not name. Resuming with the Trainer's default
data skip replays the stream from step 0 with the saved weights (exact, and costs a pass over the
skipped examples); `ignore_data_skip=True` starts the stream at the checkpoint's step directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from acodm_ray.anyloop.feedback import MixingFeedback

STATE_FILE = "acodm_mixing.pt"


def _batches_per_step(args: Any, train_dataloader: Any) -> int:
    """Loader batches per optimizer step: accelerate's dispatcher (its default for iterable datasets
    on several processes) has rank 0 draw every process's batch."""
    dispatching = type(train_dataloader).__name__ == "DataLoaderDispatcher"
    return args.gradient_accumulation_steps * (args.world_size if dispatching else 1)


class MixingCallback(TrainerCallback):
    def __init__(self, feedback: MixingFeedback) -> None:
        self.feedback = feedback
        self._lr: float | None = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if args.remove_unused_columns:
            raise ValueError(
                "the mixing dataset's `domain` field would be dropped by the Trainer: create "
                "TrainingArguments(..., remove_unused_columns=False)"
            )
        fb = self.feedback
        fb.connect()  # the Trainer's process group is up now; the feedback was likely built before it
        fb.total_steps = int(state.max_steps)
        fb.dataset.configure(
            args.per_device_train_batch_size, _batches_per_step(args, train_dataloader)
        )
        if state.global_step > 0:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
            if not path.is_file():
                raise FileNotFoundError(
                    f"resuming at step {state.global_step} but {path} does not exist: the "
                    "checkpoint was not written with the MixingCallback"
                )
            fb.load(path)
            # the Trainer's data skip draws the first steps again and drops them; without it the stream
            # starts where the checkpoint left off
            fb.dataset.start_step = state.global_step if args.ignore_data_skip else 0

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self._lr = float(optimizer.param_groups[0]["lr"])

    def on_step_end(self, args, state, control, **kwargs):
        self.feedback.step(lr=self._lr)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.feedback.save(
                Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
            )


def trainer_kwargs(feedback: MixingFeedback) -> dict[str, Any]:
    """`Trainer(..., **trainer_kwargs(feedback))`: the callback and the per-example loss."""
    return {"callbacks": [MixingCallback(feedback)], "compute_loss_func": feedback.compute_loss}
