"""Pretrain a Hugging Face causal LM with the Hugging Face `Trainer` on a data mix chosen by any
acodm-ray mixer: no Ray, no changes to the Trainer beyond a callback and the loss function.

    python examples/hf_trainer.py --config configs/tiny.yaml --mixer odm
    python examples/hf_trainer.py --config configs/tiny.yaml --policy runs/<name>/policy
    python examples/hf_trainer.py --config configs/tiny.yaml --mixer acodm-online   # exports <output>/policy

`--mixer` is any of uniform, natural, file (mixer.weights_file), odm (mixer.odm_variant:
smoothed_mean | exp3), alignment, acodm-online; `--policy` serves an exported AC-ODM / PPO / SAC
policy or weight schedule. The corpus, model and batch come from the config (`--set k=v` overrides,
as everywhere). Writes the Trainer's checkpoints and `summary.json` to `--output`
(default runs/hf-<mixer>); `--resume` continues from the last checkpoint.

On several processes (`torchrun --nproc_per_node N examples/hf_trainer.py ...`) the Trainer trains
with DDP (gloo on CPU): accelerate has rank 0 draw every rank's batch from the dataset, the
per-domain losses are summed over ranks, and rank 0's mixer decides for all of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _example_common, then the checkout

import torch  # noqa: E402
from _example_common import StepTrace, parser, setup, summarise  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator  # noqa: E402

from acodm_ray.anyloop import MixingDataset, MixingFeedback, trainer_kwargs  # noqa: E402
from acodm_ray.config import to_dict  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__)
    p.add_argument(
        "--save-every",
        type=int,
        default=None,
        help="checkpoint every N steps (default: at the end)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint in --output"
    )
    args = p.parse_args(argv)
    cfg, tokens, model, steps = setup(args)
    t = cfg.train
    dataset = MixingDataset.from_corpus(tokens, t.seq_len, seed=t.seed)
    feedback = MixingFeedback(
        model,
        dataset,
        total_steps=steps,
        mixer=args.mixer,
        policy=args.policy,
        signals=cfg.signals,
        mixer_config=cfg.mixer,
        agent=cfg.agent,
        seed=t.seed,
    )
    out = Path(args.output or f"{cfg.output_dir}/hf-{feedback.mixer.name}")
    targs = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=t.weight_decay,
        max_grad_norm=t.grad_clip,
        seed=t.seed,
        remove_unused_columns=False,  # keeps the `domain` field (the callback says so if it is missing)
        save_strategy="steps",
        save_steps=args.save_every or steps,
        logging_steps=max(1, steps // 4),
        dataloader_num_workers=args.workers,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )
    kwargs = trainer_kwargs(feedback)
    if args.trace:
        kwargs = traced(kwargs, feedback, StepTrace(out, targs.process_index))
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=default_data_collator,
        **kwargs,
    )
    trainer.train(resume_from_checkpoint=True if args.resume else None)
    last = feedback.last_signals
    extra = {"final_losses": dict(zip(feedback.domains, map(float, last.losses))) if last else {}}
    if last is not None:  # the reward vector of the last step (NaN: a domain not drawn in it)
        extra["last_scores"] = [float(x) for x in last.scores]
    if (
        feedback.mixer.name == "acodm-online" and feedback.rank == 0
    ):  # rank 0's agent is the one that learns
        extra["agent_updates"] = int(feedback.mixer.num_updates)
        extra["policy"] = str(feedback.export_policy(out / "policy", to_dict(cfg)))
    return summarise(feedback, out, **extra)


def traced(kwargs: dict, feedback: MixingFeedback, trace: StepTrace) -> dict:
    """`--trace`: the examples each micro-batch trained on (its labels are its input ids) and each
    step's record, after the MixingCallback's step."""
    compute_loss = kwargs["compute_loss_func"]

    def loss(outputs, labels, num_items_in_batch=None):
        if torch.is_grad_enabled():
            trace.examples(labels)
        return compute_loss(outputs, labels, num_items_in_batch)

    class TraceCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **_):
            trace.step(feedback, feedback.last_signals)

    return {"callbacks": [*kwargs["callbacks"], TraceCallback()], "compute_loss_func": loss}


if __name__ == "__main__":
    main()
