"""Pretrain a causal LM with a plain PyTorch loop on a data mix chosen by any acodm-ray mixer.

    python examples/torch_loop.py --config configs/tiny.yaml --mixer odm
    python examples/torch_loop.py --config configs/tiny.yaml --policy runs/<name>/policy

The mixing takes three lines in the loop (marked below): build a `MixingFeedback`, compute each
micro-batch's loss with `feedback.loss`, call `feedback.step()` after the optimizer step. The
examples come from a `MixingDataset` through an ordinary DataLoader (`--workers N` for worker
processes). Writes `summary.json` to `--output` (default runs/torch-<mixer>).

On several processes (`torchrun --nproc_per_node N examples/torch_loop.py ...`) it trains with
DistributedDataParallel (gloo on CPU, nccl on GPUs): each rank draws its own examples, the
per-domain losses are summed over ranks, and rank 0's mixer decides for all of them.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _example_common, then the checkout

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from _example_common import StepTrace, parser, setup, summarise  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from acodm_ray.anyloop import MixingDataset, MixingFeedback  # noqa: E402
from acodm_ray.train_step import build_optimizer, warmup_cosine  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    args = parser(__doc__).parse_args(argv)
    cfg, tokens, model, steps = setup(args)
    t = cfg.train
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    model = model.to(device).train()
    optimizer = build_optimizer(model, cfg)
    # this loop fetches a step's batches after the previous step's feedback: with no workers it can
    # use the newest weights at once (delay 0); workers prefetch, so they draw one step behind
    dataset = MixingDataset.from_corpus(
        tokens,
        t.seq_len,
        seed=t.seed,
        batch_size=t.micro_batch_size,
        grad_accum=t.grad_accum,
        delay=0 if args.workers == 0 else 1,
    )
    feedback = MixingFeedback(
        model,
        dataset,
        total_steps=steps,
        mixer=args.mixer,
        policy=args.policy,  # (1)
        optimizer=optimizer,
        signals=cfg.signals,
        mixer_config=cfg.mixer,
        agent=cfg.agent,
        seed=t.seed,
    )
    # the feedback hooks the model itself; DDP wraps it for the forward and backward
    net = DistributedDataParallel(model) if distributed else model
    out = Path(args.output or f"{cfg.output_dir}/torch-{feedback.mixer.name}")
    trace = StepTrace(out, feedback.rank) if args.trace else None
    # iterate only once the feedback is attached: worker processes copy the dataset when iteration starts
    loader = iter(DataLoader(dataset, batch_size=t.micro_batch_size, num_workers=args.workers))
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine(step, t.warmup_steps, steps, t.lr, t.min_lr)
        for _ in range(t.grad_accum):
            batch = {k: v.to(device) for k, v in next(loader).items()}
            loss = (
                feedback.loss(net(input_ids=batch["input_ids"]).logits, batch) / t.grad_accum
            )  # (2)
            loss.backward()
            if trace:
                trace.examples(batch["input_ids"])
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        signals = feedback.step()  # (3)
        losses.append(signals.loss)
        if trace:
            trace.step(feedback, signals)
    summary = summarise(feedback, out, losses=losses, finite=all(math.isfinite(x) for x in losses))
    if distributed:
        # Let the gloo worker threads finish (and free) every queued work first, then drop DDP's reducer
        # while the group is still registered: destroying the group from the reducer's destructor at
        # exit, with the GIL held, deadlocked against a gloo thread freeing a broadcast's tensors (it
        # needs the GIL): seen as a rank that never exits in 2 of 3 loaded full test runs.
        dist.barrier()
        del net
        dist.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
