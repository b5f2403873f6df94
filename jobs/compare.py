"""The paper's comparison at laptop scale: uniform, natural proportions, ODM, AC-ODM (proxy mode) and
AC-ODM (non-proxy mode) pretraining the same target with the same token budget and seeds.

    python jobs/compare.py --config configs/demo.yaml --seeds 3
    python jobs/compare.py --config configs/tiny.yaml --quick                  # smoke test
    python jobs/compare.py --config configs/demo.yaml --name demo-ablation \
        --methods uniform,odm,alignment,acodm,acodm-gamma0,acodm-lossreward,acodm@small,acodm@large
    python jobs/compare.py --config configs/bench.yaml --dry-run               # the plan, checked
    ray job submit --working-dir . -- python jobs/compare.py --config configs/demo.yaml

Budgets come from the config's `compare:` section; `--quick` applies `compare.quick` (tiny sizes,
one seed, few steps); `--set` wins over both. `--methods` takes any method `--help` lists (default:
the paper's five; the rest are ablations), a proxy method also as <method>@<size> (compare.proxy_sizes).
Writes results/<name>/: summary.json, table.md, val_ppl.png, val_ppl_domains.png, weights.png,
config.yaml, runs/<method>-seed<s>/ (each target run, as jobs/target_pretrain.py writes it) and
proxy/proxy-seed<s>/ (each proxy stage). --resume reads back the runs that finished, reruns the rest.
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, print_closing, run_dir_for, run_job, set_flags, start

from acodm_ray import compare


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    compare.add_compare_args(parser)
    args = parser.parse_args(argv)
    return run_job("compare", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    flags = set_flags(compare.compare_flags(args))
    cfg = compare.load_compare_config(args.config, [*args.overrides, *flags], quick=args.quick)
    out_dir = run_dir_for(args, "results", f"{cfg.name}-compare" + ("-quick" if args.quick else ""))
    if not start(args, compare.plan_runs(cfg, out_dir)):  # --dry-run: the plan, nothing started
        return 0
    # lazy: torch, transformers and Ray (seconds); --help, config errors and the plan come first
    from policies.compare_proxy import ray_proxy_runner

    summary = compare.run_comparison(
        cfg,
        out_dir,
        ray_proxy_runner(cfg.compare.proxy_cpus, cfg.compare.proxy_gpus),
        resume=args.resume,
        overwrite=args.overwrite,
        quick=args.quick,
        config_path=args.config,
    )
    print_closing("compare", *compare.closing_lines(summary, out_dir))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
