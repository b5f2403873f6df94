"""Target stage: pretrain the target LM on Ray Train, its domain weights served by a PolicyServer actor.

    python jobs/target_pretrain.py --config configs/demo.yaml --policy runs/demo-proxy-acodm/policy
    python jobs/target_pretrain.py --config configs/demo.yaml --mixer odm --set target.num_workers=2
    python jobs/target_pretrain.py --config configs/demo.yaml --online-acodm      # non-proxy mode
    ray job submit --working-dir . -- python jobs/target_pretrain.py --config configs/demo.yaml --policy ...

One mixer: --policy DIR (an exported AC-ODM actor, proxy mode), --mixer NAME or --online-acodm (the
agent learns on the target); default: the config's `mixer`. Resources, decisions, fault tolerance,
the server: the `target` section (--set target.num_workers=4 ...). --dry-run prints the plan only.

Writes runs/<name>/: config.yaml, metrics.jsonl + steps.csv + eval.csv + TensorBoard (rank 0),
ranks/rank<r>.jsonl, events.jsonl, ray_train/ (checkpoints: --resume continues from the latest),
model/ (save_pretrained + tokenizer), policy/ (online mode), weights.png, val_ppl.png, summary.json.
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, config_flag, print_closing, run_dir_for, run_job, set_flags, start

from acodm_ray.config import load_config
from acodm_ray.runplan import mixer_label, mode_overrides, single_run_plan


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    which = parser.add_mutually_exclusive_group()
    config_flag(which, "--policy", "target.policy", metavar="DIR")
    config_flag(which, "--mixer", "mixer.name")
    config_flag(which, "--online-acodm", "target.online_acodm", action="store_true")
    config_flag(parser, "--num-workers", "target.num_workers", type=int)
    args = parser.parse_args(argv)
    return run_job("target_pretrain", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    modes = mode_overrides(args.policy, args.mixer, args.online_acodm)
    cfg = load_config(
        args.config, [*args.overrides, *modes, *set_flags({"target.num_workers": args.num_workers})]
    )
    run_dir = run_dir_for(args, cfg.output_dir, f"{cfg.name}-target-{mixer_label(cfg)}")
    if not start(args, single_run_plan("target_pretrain", "target", cfg, run_dir)):
        return 0
    # lazy: Ray Train and transformers (seconds); --help, config errors and the plan come first
    from acodm_ray.target import closing_lines, run_target

    summary = run_target(cfg, run_dir, resume=args.resume, overwrite=args.overwrite)
    print_closing("target_pretrain", *closing_lines(summary, run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
