"""Proxy stage: learn a data-mixing policy with RLlib while pretraining a small proxy LM.

    python jobs/proxy_rl.py --config configs/demo.yaml --algo acodm
    ray job submit --working-dir . -- python jobs/proxy_rl.py --config configs/demo.yaml

Writes runs/<name>/: RLlib checkpoint (every rl.checkpoint_every iterations; --resume continues
from it), TensorBoard logs, iterations.jsonl, the exported policy (policy/: safetensors + JSON,
loads without RLlib; AC-ODM's softmax actor, or PPO/SAC/APPO's deterministic action rebuilt in
plain torch) and a rollout of the policy against ODM from the same seed.
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, init_ray, resolve_output_dir, run_job, set_flags


def main(argv: list[str] | None = None) -> int:
    from policies.registry import ALGOS

    parser = base_parser(__doc__)
    parser.add_argument("--algo", choices=ALGOS, default=None, help="RLlib algorithm (overrides rl.algo)")
    parser.add_argument("--iterations", type=int, default=None, help="overrides rl.iterations")
    parser.add_argument("--no-rollout", action="store_true", help="skip the policy-vs-ODM rollout at the end")
    args = parser.parse_args(argv)
    return run_job("proxy_rl", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from acodm_ray.config import load_config
    from acodm_ray.safety import check_output_path

    cfg = load_config(args.config, [*args.overrides, *set_flags({"rl.algo": args.algo, "rl.iterations": args.iterations})])
    run_dir = check_output_path(resolve_output_dir(args.output_dir or cfg.output_dir),
                                args.name or f"{cfg.name}-proxy-{cfg.rl.algo}")
    init_ray()
    from policies.run import run_proxy_rl

    summary = run_proxy_rl(cfg, run_dir, resume=args.resume, overwrite=args.overwrite, rollout=not args.no_rollout)
    print(closing_summary(summary, run_dir, args.config))
    return 0


def closing_summary(summary: dict, run_dir, config: str | None) -> str:
    """What the run produced and what to run next, as a few readable lines."""
    lines = [f"proxy_rl: done: {summary['iterations']} iterations of {summary['algo']}; run dir {run_dir}"]
    rollout = summary.get("rollout")
    if rollout:
        weights = rollout["policy_mean_weights"]
        top = sorted(weights.items(), key=lambda kv: -kv[1])
        lines.append("proxy_rl: the learned policy's mean domain weights over a proxy run: "
                     + ", ".join(f"{d} {w:.2f}" for d, w in top))
        ppl, odm = rollout["policy_val_ppl"]["average"], rollout["odm_val_ppl"]["average"]
        verdict = "better than" if ppl < odm else "worse than" if ppl > odm else "equal to"
        lines.append(f"proxy_rl: its proxy's final average validation perplexity is {ppl:.1f}, {verdict} "
                     f"ODM's {odm:.1f} from the same seed (mean total-variation distance between their "
                     f"weights {rollout['mean_tv_distance_to_odm']:.2f})")
        lines.append(f"proxy_rl: plot of both weight trajectories: {rollout['plot']}")
    if "policy" in summary:
        lines.append(f"proxy_rl: exported policy: {summary['policy']}")
        lines.append("proxy_rl: next, pretrain the target with it: python jobs/target_pretrain.py "
                     f"--config {config or 'CONFIG'} --policy {summary['policy']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
