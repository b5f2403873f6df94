"""Prepare a corpus: read it with Ray Data, tokenize it on an actor pool, write token shards.

    python jobs/prepare_corpus.py --config configs/demo.yaml
    python jobs/prepare_corpus.py --config configs/paper-pythia.yaml --out s3://bucket/pile-prepared
    python jobs/prepare_corpus.py --config configs/demo.yaml --dry-run   # what it reads and writes
    ray job submit --working-dir . -- python jobs/prepare_corpus.py --config configs/paper-pythia.yaml --out /mnt/shared/pile

The same as `acodm corpus prepare`, run as a Ray job: on a cluster the tokenizer actors spread over
the nodes (`prepare.workers`, default one per CPU). --out is a directory every node mounts or a
pyarrow.fs URI; training jobs then read it with `--set corpus.prepared=<it>`. Rerun the same command
after a failure and it continues from its last finished input file.
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (puts the repo on sys.path)
from _common import resolve_output_dir, run_job, set_flags, start


def main(argv: list[str] | None = None) -> int:
    from acodm_ray.cli import add_config_args, add_dry_run_arg, config_flag

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(parser)
    config_flag(parser, "--out", "corpus.prepared", metavar="DIR|URI")
    config_flag(parser, "--workers", "prepare.workers", type=int)
    parser.add_argument(
        "--force", action="store_true", help="remove an existing or interrupted output first"
    )
    add_dry_run_arg(parser)
    args = parser.parse_args(argv)
    return run_job("prepare_corpus", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    from acodm_ray.config import load_config
    from acodm_ray.data.prepared import is_remote, prepare_and_report
    from acodm_ray.runplan import prepare_plan

    out = args.out if args.out is None or is_remote(args.out) else str(resolve_output_dir(args.out))
    cfg = load_config(
        args.config,
        [*args.overrides, *set_flags({"corpus.prepared": out, "prepare.workers": args.workers})],
    )
    if not start(args, prepare_plan(cfg)):
        return 0
    for line in prepare_and_report(cfg, force=args.force):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
