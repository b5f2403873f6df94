"""The `acodm` command line.

acodm corpus build [--out DIR] [--force] [--domains a,b]   build the bundled offline corpus (Debian packages)
acodm corpus prepare --config FILE [--out DIR|URI] [--set ...] [--dry-run]   tokenize a corpus into token shards (Ray Data)
acodm corpus verify DIR|URI                      check a prepared corpus's shards against their sha256
acodm corpus derive KIND [--src DIR] [--out DIR] [--force]   the bundled corpus plus decoys
acodm pretrain --config configs/demo.yaml --mixer odm [--set train.steps=50] [--resume] [--dry-run]
acodm config show --config FILE [--method M --stage proxy|target] [--quick] [--set ...]   a resolved config
acodm config docs [--check]                     write (or check) docs/config.md from the config's fields
acodm doctor [--local] [--config FILE]          what is installed and what the demo still needs
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from acodm_ray.config import ConfigError, config_flag, load_config, to_dict
from acodm_ray.data.derived import KINDS, derive
from acodm_ray.errors import USER_ERRORS
from acodm_ray.run import print_closing
from acodm_ray.runplan import prepare_plan, single_run_plan


def set_flags(values: dict[str, object]) -> list[str]:
    """`--set` strings for the flags the user gave: {"rl.algo": "sac", "rl.iterations": None} ->
    ["rl.algo=sac"] (they go after the user's own --set, so a flag wins)."""
    return [f"{key}={value}" for key, value in values.items() if value is not None]


def run_job(prog: str, body: Callable[[], int]) -> int:
    """`body()`, with a user error (`acodm_ray.errors.USER_ERRORS`: a bad config value, run name,
    policy, corpus, ...) printed as one line `<prog>: error: <message>` and exit code 2 instead of a
    traceback. Anything else is a bug and keeps its traceback."""
    try:
        return body()
    except USER_ERRORS as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--config and --set, shared by every command that takes an experiment config."""
    parser.add_argument("--config", default=None, help="YAML preset, e.g. configs/demo.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=20 (repeatable)",
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name", default=None, help="run name (default: from the config and mixer)"
    )
    parser.add_argument(
        "--output-dir",
        default=None,
        help="parent of the run directory (default: config output_dir)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume", action="store_true", help="continue the run from its last checkpoint"
    )
    group.add_argument(
        "--overwrite", action="store_true", help="delete an existing run of the same name first"
    )
    add_dry_run_arg(parser)


def add_dry_run_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve and check every run's config, print the plan, start nothing",
    )


def cmd_corpus_build(args: argparse.Namespace) -> int:
    from acodm_ray.data.build import build_bundled_corpus

    domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
    out = build_bundled_corpus(
        Path(args.out) if args.out else None, force=args.force, domains=domains
    )
    print(f"corpus ready: {out}")
    return 0


def cmd_corpus_derive(args: argparse.Namespace) -> int:
    out = derive(
        args.kind, args.src and Path(args.src), args.out and Path(args.out), force=args.force
    )
    print(f"corpus ready: {out} (the bundled corpus + {args.kind}; --force writes it anew)")
    return 0


def cmd_corpus_prepare(args: argparse.Namespace) -> int:
    from acodm_ray.data.prepared import prepare_and_report

    flags = set_flags({"corpus.prepared": args.out, "prepare.workers": args.workers})
    cfg = load_config(args.config, [*args.overrides, *flags])
    if not prepare_plan(cfg).start(args.dry_run):
        return 0
    print("\n".join(prepare_and_report(cfg, force=args.force)))
    return 0


def cmd_corpus_verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from acodm_ray.data.manifest import verify_checksums
    from acodm_ray.data.prepared import open_location

    root, manifest = open_location(args.prepared)
    with tqdm(total=len(manifest.shards), unit="shard", desc="verify") as bar:
        verify_checksums(root, manifest, progress=bar)
    print(f"{args.prepared}: {len(manifest.shards)} shards, every checksum matches")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from acodm_ray.safety import check_output_path

    cfg = load_config(args.config, [*args.overrides, *set_flags({"mixer.name": args.mixer})])
    run_dir = check_output_path(
        Path(args.output_dir or cfg.output_dir), args.name or f"{cfg.name}-{cfg.mixer.name}"
    )
    if not single_run_plan("pretrain", "pretrain", cfg, run_dir).start(args.dry_run):
        return 0
    # lazy: torch and transformers (seconds); a config error or --dry-run comes back first
    from acodm_ray.pretrain import closing_lines, pretrain

    summary = pretrain(cfg, run_dir, resume=args.resume, overwrite=args.overwrite)
    print_closing("", *closing_lines(summary, run_dir))  # unnamed: `acodm` runs many commands
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """The resolved config as YAML: the file with its overrides, or with --method the config that
    method's proxy or target run of a comparison gets (built by the comparison's own code)."""
    if args.stage and not args.method:
        raise ConfigError("--stage needs --method: the stage of which comparison method's run")
    if args.method is None and not args.quick:
        cfg, head = load_config(args.config, args.overrides), "the config"
    else:
        # lazy: the comparison package (numpy, its reports); only --method and --quick need it
        from acodm_ray.compare import load_compare_config, proxy_config, target_config

        cfg = load_compare_config(args.config, args.overrides, quick=args.quick)
        seed = cfg.compare.first_seed if args.seed is None else args.seed
        head = "the comparison's config" + (" under --quick" if args.quick else "")
        if args.method and args.stage == "proxy":
            cfg, head = proxy_config(cfg, seed, args.method), f"{args.method}'s proxy stage"
        elif args.method:
            cfg, head = target_config(cfg, args.method, seed), f"{args.method}'s target run"
            head += "; jobs/compare.py also sets target.server_name and a proxy method's policy"
        head += f", seed {seed}"
    print(f"# acodm config show: {head}\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
    return 0


def cmd_config_docs(args: argparse.Namespace) -> int:
    from acodm_ray.config_docs import render  # lazy: only this command renders the docs

    text, path = render(), Path(args.out)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            raise ConfigError(
                f"{path} is not what the config's fields generate: run `acodm config docs`"
            )
        print(f"{path} is up to date")
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from acodm_ray.doctor import run_doctor

    code, text = run_doctor(args.config, local=args.local, timeout=args.timeout)
    print(text)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acodm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_corpus_commands(sub)
    _add_pretrain_command(sub)
    _add_config_commands(sub)
    _add_doctor_command(sub)
    return parser


def _add_corpus_commands(sub: argparse._SubParsersAction) -> None:
    """acodm corpus build | derive | prepare | verify."""
    corpus = sub.add_parser("corpus", help="corpus tools")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    build = corpus_sub.add_parser(
        "build", help="build the bundled offline corpus from Debian packages"
    )
    build.add_argument(
        "--out", default=None, help="output directory (default: $ACODM_HOME/corpus/debian-v1)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if it exists")
    build.add_argument(
        "--domains",
        default=None,
        help="comma-separated subset of the domains (a partial corpus; needs --out)",
    )
    build.set_defaults(func=cmd_corpus_build)
    _add_derive_command(corpus_sub)
    prepare = corpus_sub.add_parser(
        "prepare", help="tokenize a config's corpus into token shards (a Ray Data job)"
    )
    add_config_args(prepare)
    config_flag(prepare, "--out", "corpus.prepared", metavar="DIR|URI")
    config_flag(prepare, "--workers", "prepare.workers", type=int)
    prepare.add_argument(
        "--force", action="store_true", help="remove an existing or interrupted output first"
    )
    add_dry_run_arg(prepare)
    prepare.set_defaults(func=cmd_corpus_prepare)
    verify = corpus_sub.add_parser(
        "verify", help="check every shard of a prepared corpus against its sha256"
    )
    verify.add_argument("prepared", help="a prepared corpus directory or URI")
    verify.set_defaults(func=cmd_corpus_verify)


def _add_derive_command(corpus_sub: argparse._SubParsersAction) -> None:
    """acodm corpus derive."""
    derive = corpus_sub.add_parser(
        "derive",
        help="derive a corpus with a known answer from the bundled one (offline, seconds)",
        description="Write the bundled corpus plus decoy domains (decoys, swamped, junk) or with "
        "domains merged (merged), next to it as <bundled>-KIND; acodm_ray/data/derived.py says "
        "what each holds. Read it with --set corpus.path=debian-v1-KIND.",
    )
    derive.add_argument("kind", choices=list(KINDS))
    derive.add_argument(
        "--src", default=None, help="the bundled corpus (default: the one `corpus build` made)"
    )
    derive.add_argument("--out", default=None, help="output directory (default: <src>-KIND)")
    derive.add_argument("--force", action="store_true", help="rewrite it if it exists")
    derive.set_defaults(func=cmd_corpus_derive)


def _add_pretrain_command(sub: argparse._SubParsersAction) -> None:
    """acodm pretrain."""
    pre = sub.add_parser("pretrain", help="pretrain an LM with a mixer (single process)")
    add_config_args(pre)
    add_run_args(pre)
    config_flag(pre, "--mixer", "mixer.name")
    pre.set_defaults(func=cmd_pretrain)


def _add_config_commands(sub: argparse._SubParsersAction) -> None:
    """acodm config show | docs."""
    config = sub.add_parser("config", help="resolved configs and their documentation")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser(
        "show", help="print a resolved config (a comparison method's run with --method)"
    )
    add_config_args(show)
    show.add_argument("--method", default=None, help="a jobs/compare.py method (e.g. acodm@small)")
    show.add_argument(
        "--stage", choices=("proxy", "target"), default=None, help="with --method (default: target)"
    )
    show.add_argument("--seed", type=int, default=None, help="default: compare.first_seed")
    show.add_argument("--quick", action="store_true", help="apply compare.quick, as --quick does")
    show.set_defaults(func=cmd_config_show)
    docs = config_sub.add_parser("docs", help="write docs/config.md from the config's fields")
    docs.add_argument("--out", default="docs/config.md", help="where (default: docs/config.md)")
    docs.add_argument("--check", action="store_true", help="only check that the file is up to date")
    docs.set_defaults(func=cmd_config_docs)


def _add_doctor_command(sub: argparse._SubParsersAction) -> None:
    """acodm doctor."""
    doctor = sub.add_parser(
        "doctor", help="check the environment: versions, GPUs, Ray cluster, corpus, auth"
    )
    doctor.add_argument(
        "--config",
        default=None,
        help="check this config's corpus and output dir (default: the demo's)",
    )
    doctor.add_argument(
        "--local",
        action="store_true",
        help="also start a throwaway local Ray to list its resources",
    )
    doctor.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a cluster probe"
    )
    doctor.set_defaults(func=cmd_doctor)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return run_job(
        "acodm", lambda: args.func(args)
    )  # a NaN loss (NonFiniteLossError) is one of USER_ERRORS


if __name__ == "__main__":
    sys.exit(main())
