"""The paper's comparison at laptop scale: uniform, natural proportions, ODM, AC-ODM (proxy mode) and
AC-ODM (non-proxy mode) pretraining the same target with the same token budget and seeds.

    python jobs/compare.py --config configs/demo.yaml --seeds 3
    python jobs/compare.py --config configs/tiny.yaml --quick                  # smoke test
    python jobs/compare.py --config configs/demo.yaml --methods uniform,odm,acodm --seeds 2
    ray job submit --working-dir . -- python jobs/compare.py --config configs/demo.yaml

Budgets come from the config's `compare:` section (target steps, proxy model and RL iterations,
concurrency); `--quick` applies `compare.quick` (tiny sizes, one seed, few steps); `--set` wins over
both. `--methods` takes any of the methods `--help` lists (default: the paper's five; the rest are
ablations), a proxy method also as <method>@<size> from compare.proxy_sizes (the proxy-size sweep):

    python jobs/compare.py --config configs/demo.yaml --name demo-ablation \
        --methods uniform,odm,alignment,acodm,acodm-gamma0,acodm-lossreward,acodm@small,acodm@large

Writes results/<name>/: summary.json (every figure, per run and per method), table.md, val_ppl.png
(average validation perplexity vs steps, mean ± std over seeds), val_ppl_domains.png (per domain),
weights.png (domain weights over steps, one panel per method), config.yaml, runs/<method>-seed<s>/
(each target run, as jobs/target_pretrain.py writes it) and proxy/proxy-seed<s>/ (each proxy stage).
--resume reads back the runs that finished and reruns the others.
"""

from __future__ import annotations

import argparse
import json
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import base_parser, init_ray, run_dir_for, run_job, set_flags

from acodm_ray.compare import METHODS


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=None, help="runs per method (overrides compare.seeds)")
    parser.add_argument("--methods", default=None, help="comma-separated (overrides compare.methods), any of: "
                        + ", ".join(METHODS) + "; proxy methods also as <method>@<size> (compare.proxy_sizes)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (compare.quick): tiny, 1 seed, few steps")
    parser.add_argument("--concurrency", type=int, default=None, help="runs at the same time (compare.concurrency)")
    args = parser.parse_args(argv)
    return run_job("compare", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from acodm_ray.compare import headline_lines, load_compare_config

    methods = None if args.methods is None else json.dumps([m.strip() for m in args.methods.split(",") if m.strip()])
    flags = set_flags({"compare.methods": methods, "compare.seeds": args.seeds, "compare.concurrency": args.concurrency})
    cfg = load_compare_config(args.config, [*args.overrides, *flags], quick=args.quick)
    out_dir = run_dir_for(args, "results", f"{cfg.name}-compare" + ("-quick" if args.quick else ""))
    if out_dir.exists() and any(out_dir.iterdir()) and not (args.resume or args.overwrite):
        raise FileExistsError(f"{out_dir} already exists; pass --resume, --overwrite or another --name")
    init_ray()
    from acodm_ray.compare import run_comparison
    from policies.compare_proxy import ray_proxy_runner

    summary = run_comparison(cfg, out_dir, ray_proxy_runner(cfg.compare.proxy_cpus, cfg.compare.proxy_gpus), resume=args.resume,
                             overwrite=args.overwrite, quick=args.quick, config_path=args.config)
    for line in [*headline_lines(summary), f"done in {summary['wall_clock_s']:.0f} s; table {out_dir / 'table.md'}; "
                 f"summary {out_dir / 'summary.json'}"]:
        print(f"compare: {line}")
    for key, why in summary["failures"].items():
        print(f"compare: error: {key}: {why}", file=sys.stderr)
    return 1 if summary["failures"] else 0

if __name__ == "__main__":
    sys.exit(main())
