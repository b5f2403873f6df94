"""The comparison job's own flags (`jobs/compare.py`), and the `compare.*` values they set.

Here rather than in the job because their meaning is the comparison's: `--methods` lists what
`methods` registers and takes the same names `compare.methods` does, and each flag is only a
shorthand for a `--set compare.*` override. Keeping them next to the config they override keeps the
job what a job is (arguments, a config and a call into the library; `tests/test_layering.py`).
"""

from __future__ import annotations

import argparse
import json

from acodm_ray.compare.methods import METHODS
from acodm_ray.config import config_flag


def add_compare_args(parser: argparse.ArgumentParser) -> None:
    """--seeds, --methods, --quick and --concurrency (each overrides its `compare.*` value; their
    help is the field's docstring)."""
    config_flag(parser, "--seeds", "compare.seeds", type=int)
    config_flag(
        parser,
        "--methods",
        "compare.methods",
        metavar="M1,M2,...",
        help="comma-separated (overrides compare.methods), any of: "
        + ", ".join(METHODS)
        + "; proxy methods also as <method>@<size> (compare.proxy_sizes)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="apply compare.quick: smoke-test sizes, 1 seed"
    )
    config_flag(parser, "--concurrency", "compare.concurrency", type=int)


def compare_flags(args: argparse.Namespace) -> dict[str, object]:
    """{config key: the flag's value} (None where the flag was not given), for `cli.set_flags`;
    `--methods a,b` becomes the JSON list a `--set` value needs."""
    methods = (
        None
        if args.methods is None
        else json.dumps([m.strip() for m in args.methods.split(",") if m.strip()])
    )
    return {
        "compare.methods": methods,
        "compare.seeds": args.seeds,
        "compare.concurrency": args.concurrency,
    }
