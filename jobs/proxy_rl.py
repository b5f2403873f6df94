"""Proxy stage: learn a data-mixing policy with RLlib while pretraining a small proxy LM.

    python jobs/proxy_rl.py --config configs/demo.yaml --algo acodm
    ray job submit --working-dir . -- python jobs/proxy_rl.py --config configs/demo.yaml

Writes runs/<name>/: RLlib checkpoint (every rl.checkpoint_every iterations; --resume continues
from it), TensorBoard logs, iterations.jsonl, the exported policy (policy/: safetensors + JSON,
loads without RLlib; AC-ODM's softmax actor, or PPO/SAC/APPO's deterministic action rebuilt in
plain torch) and a rollout of the policy against ODM from the same seed (and uniform, when
train.eval_domains names targets: the closing summary's table).
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, config_flag, print_closing, run_dir_for, run_job, set_flags, start

from acodm_ray.config import load_config
from acodm_ray.runplan import single_run_plan


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    config_flag(parser, "--algo", "rl.algo")
    config_flag(parser, "--iterations", "rl.iterations", type=int)
    parser.add_argument(
        "--no-rollout", action="store_true", help="skip the policy-vs-ODM rollout at the end"
    )
    args = parser.parse_args(argv)
    return run_job("proxy_rl", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    cfg = load_config(
        args.config,
        [*args.overrides, *set_flags({"rl.algo": args.algo, "rl.iterations": args.iterations})],
    )
    run_dir = run_dir_for(args, cfg.output_dir, f"{cfg.name}-proxy-{cfg.rl.algo}")
    if not start(args, single_run_plan("proxy_rl", "proxy", cfg, run_dir)):
        return 0
    # lazy: torch, transformers and the env on top of RLlib (seconds); config errors come first
    from policies.run import closing_lines, run_proxy_rl

    summary = run_proxy_rl(
        cfg, run_dir, resume=args.resume, overwrite=args.overwrite, rollout=not args.no_rollout
    )
    print_closing("proxy_rl", *closing_lines(summary, run_dir, args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
