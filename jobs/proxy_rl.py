"""Proxy stage: learn a data-mixing policy with RLlib while pretraining a small proxy LM.

    python jobs/proxy_rl.py --config configs/demo.yaml --algo acodm
    ray job submit --working-dir . -- python jobs/proxy_rl.py --config configs/demo.yaml

Writes runs/<name>/: RLlib checkpoint (every rl.checkpoint_every iterations; --resume continues
from it), TensorBoard logs, iterations.jsonl, the exported policy (policy/: safetensors + JSON,
loads without RLlib; AC-ODM's softmax actor, or PPO/SAC/APPO's deterministic action rebuilt in
plain torch) and a rollout of the policy against ODM from the same seed.
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, init_ray, resolve_output_dir


def main(argv: list[str] | None = None) -> int:
    from acodm_ray.config import ConfigError, load_config
    from policies.registry import ALGOS

    parser = base_parser(__doc__)
    parser.add_argument("--algo", choices=ALGOS, default=None, help="RLlib algorithm (overrides rl.algo)")
    parser.add_argument("--iterations", type=int, default=None, help="overrides rl.iterations")
    parser.add_argument("--no-rollout", action="store_true", help="skip the policy-vs-ODM rollout at the end")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.algo:
        overrides.append(f"rl.algo={args.algo}")
    if args.iterations is not None:
        overrides.append(f"rl.iterations={args.iterations}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"proxy_rl: error: {err}", file=sys.stderr)
        return 2
    from acodm_ray.safety import check_output_path

    try:
        run_dir = check_output_path(resolve_output_dir(args.output_dir or cfg.output_dir),
                                    args.name or f"{cfg.name}-proxy-{cfg.rl.algo}")
    except ValueError as err:
        print(f"proxy_rl: error: {err}", file=sys.stderr)
        return 2
    init_ray()
    from policies.run import run_proxy_rl

    try:
        summary = run_proxy_rl(cfg, run_dir, resume=args.resume, overwrite=args.overwrite,
                               rollout=not args.no_rollout)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"proxy_rl: error: {err}", file=sys.stderr)
        return 2
    print(f"proxy_rl: done: {summary['iterations']} iterations of {summary['algo']}; run dir {run_dir}")
    if "policy" in summary:
        print(f"proxy_rl: exported policy: {summary['policy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
