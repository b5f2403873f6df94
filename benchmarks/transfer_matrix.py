"""Which training domain helps which evaluated domain: the proxy's gradient-transfer matrix.

Trains the proxy stage's LM (configs/bench.yaml's proxy, seed 100 by default: not a reported seed)
under the uniform mix and, every `--every` steps after the first 20, draws one fresh micro-batch
of every domain i and one of every evaluated domain e (apart from the step's) and records
M[i, e] = <g_i, h_e>, both gradients on the alignment matrices. Averaged over the reads, M[i, e] is
to first order how much a step on domain i lowers evaluated domain e's loss; its row mean is what
the `eval` score pays domain i (E g_ref is the mean of the h_e), and the diagonal is each
evaluated domain's benefit from its own data. Entries are printed relative to the mean diagonal.

Why: the `eval` score ranks a domain by its row mean, so a domain that helps many evaluated
domains a little outranks one that helps only itself; this shows by how much, domain by domain
(docs/studies/2026-12-05-closing-the-gap-dev.md).

    python benchmarks/transfer_matrix.py --set corpus.path=debian-v1-junk --set train.grad_accum=14 \
        --set 'train.eval_domains=[python_code,dictionary,c_headers,manuals,literature,latex,legal]'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import table  # noqa: E402


def transfer(sets: list[str], seed: int, steps: int, every: int) -> dict:
    import torch
    from tqdm import tqdm

    from acodm_ray.compare import proxy_config
    from acodm_ray.config import load_config
    from acodm_ray.data.load import load_tokenized
    from acodm_ray.eval_reference import flat
    from acodm_ray.train_step import LMTrainer

    cfg = proxy_config(load_config(ROOT / "configs/bench.yaml", sets), seed, "acodm")
    tokens, _ = load_tokenized(cfg)
    trainer = LMTrainer(cfg, tokens, seed=seed, compute_signals=False)
    domains = list(tokens.domains)
    evaluated = [domains.index(d) for d in cfg.train.eval_domains or domains]

    def gradient(domain: int) -> torch.Tensor:
        loss = trainer._loss(trainer.sampler.batch(domain))
        return flat(torch.autograd.grad(loss, trainer.align_params)).double()

    reads: list[np.ndarray] = []
    uniform = np.full(len(domains), 1.0 / len(domains))
    for step in tqdm(range(1, steps + 1), desc="proxy steps (uniform mix)"):
        trainer.step(uniform)
        if step > 20 and step % every == 0:
            g = torch.stack([gradient(i) for i in range(len(domains))])
            h = torch.stack([gradient(e) for e in evaluated])
            reads.append((g @ h.T).numpy())
    stack = np.stack(reads)
    return {
        "sets": sets,
        "seed": seed,
        "steps": steps,
        "reads": len(reads),
        "domains": domains,
        "evaluated": [domains[e] for e in evaluated],
        "matrix": stack.mean(axis=0).tolist(),
        "row_mean_se": (stack.mean(axis=2).std(axis=0, ddof=1) / np.sqrt(len(reads))).tolist(),
    }


def report(result: dict) -> str:
    """The matrix relative to the mean diagonal, with each row's mean (what `eval` pays) and its
    standard error over the reads."""
    m = np.asarray(result["matrix"])
    domains, evaluated = result["domains"], result["evaluated"]
    scale = np.mean([m[domains.index(e), j] for j, e in enumerate(evaluated)])
    rows = [
        [
            f"`{d}`",
            *(f"{x / scale:.2f}" for x in m[i]),
            f"**{m[i].mean() / scale:.2f}** ± {result['row_mean_se'][i] / scale:.2f}",
        ]
        for i, d in enumerate(domains)
    ]
    return table(["trained on \\ evaluated", *evaluated, "row mean ± se"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200, help="proxy steps under the uniform mix")
    parser.add_argument("--every", type=int, default=2, help="steps between reads")
    parser.add_argument("--json", type=Path, default=None, help="also write the matrix here")
    args = parser.parse_args()
    result = transfer(args.set, args.seed, args.steps, args.every)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(report(result))


if __name__ == "__main__":
    main()
