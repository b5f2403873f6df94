"""`acodm doctor`: what this machine has, and what the demo still needs.

Prints the versions of the stack, CPUs and CUDA GPUs, the Ray cluster named by RAY_ADDRESS (its
resources, probed in a subprocess with a timeout by `acodm_ray.ray_probe`; none is started unless
`--local`), whether the bundled corpus is built (path + manifest summary), the tokenizer cache, and
the token-auth state (RAY_AUTH_MODE, whether a token is configured: never the token itself).

Every line is `[ok]`, `[--]` (information) or `[!!]` (missing; the line says the command that fixes
it). Exit code 0 when nothing the demo needs is missing, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acodm_ray.config import cache_dir, load_config
from acodm_ray.data.build import default_corpus_dir
from acodm_ray.data.derived import derived_kind
from acodm_ray.ray_probe import (
    PROBE_TIMEOUT_S,
    _port_open,
    _ray_address_file,
    probe_cluster,
)

PACKAGES = ("torch", "ray", "transformers", "datasets", "gymnasium", "tokenizers")
REQUIRED = PACKAGES + ("safetensors", "yaml", "numpy", "tensorboard", "matplotlib")  # import names
DIST_NAMES = {"yaml": "pyyaml"}
TORCH_PIN = "2.13.0"
SETUP_FIX = "make setup  (or: pip install -c constraints.txt torch==2.13.0 && pip install -c constraints.txt -e .)"


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self.lines.append(f"\n{title}")

    def info(self, text: str) -> None:
        self.lines.append(f"  [--] {text}")

    def ok(self, text: str) -> None:
        self.lines.append(f"  [ok] {text}")

    def missing_item(self, text: str, fix: str) -> None:
        self.lines.append(f"  [!!] {text}\n       fix: {fix}")
        self.missing.append(f"{text} -> {fix}")

    def text(self) -> str:
        return "\n".join(self.lines)


# ------------------------------------------------------------------------------------ checks


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions(r: Report) -> None:
    r.section("versions")
    r.info(f"python       {platform.python_version()} ({sys.executable})")
    for name in PACKAGES:
        v = _version(name)
        if v is None:
            r.missing_item(f"{name:<12} not installed", SETUP_FIX)
        elif name == "torch" and v.split("+")[0] != TORCH_PIN:
            r.info(f"{name:<12} {v} (the project pins {TORCH_PIN}; constraints.txt)")
        else:
            r.ok(f"{name:<12} {v}")
    others = [m for m in REQUIRED if m not in PACKAGES and importlib.util.find_spec(m) is None]
    for m in others:
        r.missing_item(f"{DIST_NAMES.get(m, m):<12} not installed", SETUP_FIX)
    if importlib.util.find_spec("aiohttp") is None:
        r.info(
            "ray[default] extras missing: `ray job submit` and the dashboard need them "
            "(pip install 'ray[default]')"
        )
    for opt in ("mlflow", "wandb"):
        r.info(f"{opt:<12} {_version(opt) or 'not installed'} (optional: tracking.{opt})")


def check_hardware(r: Report) -> None:
    r.section("hardware")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    r.info(f"CPUs         {usable} usable of {os.cpu_count()}")
    if importlib.util.find_spec("torch") is None:
        r.info("CUDA GPUs    unknown (torch not installed)")
        return
    # lazy: the doctor must run where torch is missing (the check above), and fast
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        r.info(f"CUDA GPUs    {len(names)} (CUDA {torch.version.cuda}): " + ", ".join(names))
    else:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        r.info(f"CUDA GPUs    0 (torch {build}; train.device=auto uses the CPU)")


def _fmt_resources(res: dict[str, Any] | None) -> str:
    if not res:
        return "none"
    out = []
    for key in sorted(res):
        if key.startswith(("node:", "accelerator_type:")):
            continue
        v = res[key]
        if key in ("memory", "object_store_memory"):
            out.append(f"{key} {v / 2**30:.1f} GiB")
        else:
            out.append(f"{key} {v:g}")
    return ", ".join(out) or "none"


def check_local_head(r: Report) -> None:
    """RAY_ADDRESS unset: is there a head recorded by `ray start` that a plain ray.init() would join?"""
    path = _ray_address_file()
    try:
        recorded = path.read_text().strip() if path.is_file() else ""
    except OSError:
        recorded = ""
    if not recorded:
        return
    if _port_open(recorded):
        r.info(
            f"a head started by `ray start` is recorded at {recorded} ({path}): a plain ray.init() joins "
            f"it; `export RAY_ADDRESS={recorded}` to list its resources here"
        )
    else:
        r.missing_item(
            f"stale Ray address file {path} names {recorded}, which is down: jobs/*.py without "
            "RAY_ADDRESS would try to join it and fail",
            f"rm {path}  (or `ray stop`, which also stops every Ray process of this user)",
        )


def check_ray(r: Report, local: bool, timeout: float) -> None:
    r.section("ray cluster")
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        res = probe_cluster(address, timeout)
        if res.get("ok"):
            r.ok(f"RAY_ADDRESS={address}: {res.get('nodes')} node(s), Ray {res.get('version')}")
            r.info(f"total        {_fmt_resources(res.get('total'))}")
            if res.get("available") is not None:
                r.info(f"available    {_fmt_resources(res.get('available'))}")
        elif res.get("port_open") is False:
            r.missing_item(
                f"RAY_ADDRESS={address} is not reachable: {res.get('error')}",
                "start the head with `ray start --head` from this environment (or port-forward the "
                "cluster's dashboard), or `unset RAY_ADDRESS` to let jobs start a local Ray",
            )
        else:  # something answers: most often a token that is missing or not the cluster's
            r.missing_item(
                f"RAY_ADDRESS={address} answers but Ray refused: {res.get('error')}",
                "use the cluster's token: RAY_AUTH_MODE=token with it in ~/.ray/auth_token (chmod 600) or "
                "RAY_AUTH_TOKEN (deploy/README.md); also check that the Ray versions match",
            )
    else:
        r.info(
            "RAY_ADDRESS not set: no cluster to query (jobs/*.py start a local Ray by themselves). "
            "To run one: `RAY_AUTH_MODE=disabled ray start --head --num-cpus 2` on a loopback-only "
            "machine, then `export RAY_ADDRESS=127.0.0.1:6379`; see deploy/README.md for clusters"
        )
        check_local_head(r)
    if local:
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        env.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway probe: write no token file
        res = probe_cluster("--local", timeout, env=env)
        if res.get("ok"):
            r.ok(
                f"--local: a local Ray {res.get('version')} starts here: {_fmt_resources(res.get('total'))}"
            )
        else:
            r.missing_item(
                f"--local: a local Ray did not start: {res.get('error')}",
                f"check `ray start --head` output and free memory/disk ({SETUP_FIX.split('  ')[0]})",
            )


def _corpus_dir(config: Any | None) -> tuple[str, Path | None]:
    """(corpus source, dir to check) for the demo (bundled) or the given config."""
    if config is None:
        return "bundled", default_corpus_dir()
    c = config.corpus
    if c.source != "bundled":
        return c.source, None
    root = Path(c.path).expanduser() if c.path else default_corpus_dir()
    if not root.is_absolute() and not root.exists():  # a corpus name under $ACODM_HOME/corpus
        root = default_corpus_dir().parent / root
    return "bundled", root


def check_data(r: Report, config: Any | None) -> None:
    r.section("data")
    source, corpus = _corpus_dir(config)
    if corpus is None:
        note = {
            "tiny": "ships inside the package",
            "hub": "downloaded from the Hugging Face hub on first use",
        }
        r.info(
            f"corpus       source={source}: {note.get(source, 'local files named in the config')}"
        )
    else:
        manifest_path = corpus / "manifest.json"
        if not manifest_path.is_file():
            kind = derived_kind(corpus)
            r.missing_item(
                f"corpus       not built: no {manifest_path}",
                f"acodm corpus derive {kind}  (after acodm corpus build)"
                if kind
                else "acodm corpus build  (or: make corpus)",
            )
        else:
            try:
                m = json.loads(manifest_path.read_text())
                domains = m.get("domains") or {}
                train_bytes = sum(
                    (d.get("train") or {}).get("bytes", 0)
                    for d in domains.values()
                    if isinstance(d, dict)
                )
                r.ok(
                    f"corpus       {corpus}: {m.get('name', '?')} v{m.get('format_version', '?')}, "
                    f"{len(domains)} domains ({', '.join(domains)}), {train_bytes / 1e6:.1f} MB train, "
                    f"{len(m.get('packages') or [])} packages from {m.get('apt_host', '?')}"
                )
            except (OSError, ValueError, AttributeError) as err:
                r.missing_item(
                    f"corpus       manifest {manifest_path} unreadable ({type(err).__name__}: {err})",
                    "acodm corpus build --force",
                )
    tok_root = cache_dir() / "tokenizers"
    cached = (
        sorted(p.parent.name for p in tok_root.glob("*/tokenizer.json"))
        if tok_root.is_dir()
        else []
    )
    if cached:
        r.ok(f"tokenizers   {len(cached)} cached under {tok_root}")
    else:
        r.info(
            f"tokenizers   none cached under {tok_root} yet (trained and cached on the first run)"
        )
    home = cache_dir()
    probe = home if home.exists() else next((p for p in home.parents if p.exists()), Path("/"))
    r.info(
        f"cache        {home} (ACODM_HOME); {shutil.disk_usage(probe).free / 2**30:.1f} GiB free"
    )


def check_auth(r: Report) -> None:
    r.section("ray token auth")
    mode = os.environ.get("RAY_AUTH_MODE")
    token_file = Path.home() / ".ray" / "auth_token"
    env_token = bool(os.environ.get("RAY_AUTH_TOKEN"))
    path_var = os.environ.get("RAY_AUTH_TOKEN_PATH")
    r.info(f"RAY_AUTH_MODE        {mode if mode is not None else 'unset'}")
    r.info(f"RAY_AUTH_TOKEN       {'set (value not shown)' if env_token else 'not set'}")
    if path_var:
        exists = Path(path_var).expanduser().is_file()
        r.info(f"RAY_AUTH_TOKEN_PATH  {path_var} (exists: {'yes' if exists else 'no'})")
        if not exists:
            r.missing_item(
                f"RAY_AUTH_TOKEN_PATH={path_var} does not exist (Ray aborts on an unreadable token path)",
                "point RAY_AUTH_TOKEN_PATH at the token file, or unset it",
            )
    exists = token_file.is_file()
    detail = ""
    if exists:
        loose = token_file.stat().st_mode & 0o077
        detail = f" (mode {token_file.stat().st_mode & 0o777:o}{', readable by others: chmod 600 it' if loose else ''})"
    r.info(f"{str(token_file):<20} exists: {'yes' if exists else 'no'}{detail}")
    have_token = env_token or exists or (path_var and Path(path_var).expanduser().is_file())
    if (mode or "").lower() == "token" and not have_token:
        r.missing_item(
            "RAY_AUTH_MODE=token but no token is configured",
            "ray get-auth-token --generate  (or set RAY_AUTH_TOKEN from your secret store)",
        )
    elif mode is None and exists:
        r.info(
            "a token file exists and RAY_AUTH_MODE is unset: `ray start --head` will turn token auth on; "
            "set RAY_AUTH_MODE the same for `ray start` and `ray job submit`"
        )


def check_output_root(r: Report, output_dir: str) -> None:
    r.section("outputs")
    root = Path(os.environ.get("ACODM_OUTPUT_ROOT") or output_dir).expanduser()
    existing = root if root.exists() else next((p for p in root.parents if p.exists()), None)
    if existing is not None and os.access(existing, os.W_OK):
        r.ok(f"run root     {root.resolve()} is writable")
    else:
        r.missing_item(
            f"run root     {root} is not writable",
            "choose another one with --output-dir or ACODM_OUTPUT_ROOT",
        )


# ------------------------------------------------------------------------------------ entry


def run_doctor(
    config_path: str | None = None, local: bool = False, timeout: float = PROBE_TIMEOUT_S
) -> tuple[int, str]:
    """(exit code, report text)."""
    r = Report(["acodm doctor"])
    config = None
    output_dir = "runs"
    if config_path:
        config = load_config(config_path)
        output_dir = config.output_dir
    check_versions(r)
    check_hardware(r)
    check_data(r, config)
    check_auth(r)
    check_ray(r, local, timeout)
    check_output_root(r, output_dir)
    if r.missing:
        r.lines.append(f"\n{len(r.missing)} item(s) missing for the demo:")
        r.lines += [f"  - {m}" for m in r.missing]
        return 1, r.text()
    r.lines.append(
        "\neverything the demo needs is here: `make demo` (or, after `acodm corpus derive "
        "swamped`, python jobs/proxy_rl.py --config configs/demo-decoys.yaml)"
    )
    return 0, r.text()


def add_doctor_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        help="check this config's corpus and output dir (default: the demo's)",
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="also start a throwaway local Ray to list its resources",
    )
    parser.add_argument(
        "--timeout", type=float, default=PROBE_TIMEOUT_S, help="seconds to wait for a cluster probe"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="acodm doctor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_doctor_args(parser)
    args = parser.parse_args(argv)
    code, text = run_doctor(args.config, args.local, args.timeout)
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
