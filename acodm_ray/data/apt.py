"""Debian packages by name: `apt-get download` into a temp dir and `dpkg-deb -x` (nothing is
installed), with the apt lists refreshed once per build when a package has no downloadable candidate
(most container images delete `/var/lib/apt/lists`); as root, else the error says the command to run."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from acodm_ray.errors import AcodmError


class CorpusBuildError(AcodmError, RuntimeError):
    """The bundled corpus could not be built (missing tool, failed download, empty domain)."""


def log(msg: str) -> None:
    print(f"[corpus] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    sha256: str
    size: int
    path: Path


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CorpusBuildError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    return proc.stdout


def require_tools(tools: Iterable[str] = ("apt-get", "apt-cache", "dpkg-deb")) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise CorpusBuildError(
            f"building the bundled corpus needs {', '.join(missing)} (a Debian/Ubuntu system); "
            "use corpus.source=tiny or local files (json/parquet/text/csv) instead"
        )


def has_candidate(package: str) -> bool:
    """True when apt knows a downloadable version of `package` (local apt cache only)."""
    proc = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    return bool(m) and m.group(1) != "(none)"


class AptLists:
    """Refreshes apt's package lists at most once per build, when a package turns out missing.

    `apt-get update` needs root; without it the build stops with the exact commands to run. The
    lists apt reads are wherever apt is configured to keep them (`APT_CONFIG`, `Dir::State::Lists`)."""

    def __init__(self) -> None:
        self.refreshed = False

    def refresh(self, why: str) -> None:
        if self.refreshed:
            return
        if os.geteuid() != 0:
            raise CorpusBuildError(
                f"{why}; apt's package lists are stale or missing and refreshing them needs root. "
                "Run `sudo apt-get update`, then `acodm corpus build` again"
            )
        log(f"{why}; refreshing apt's package lists (apt-get update) ...")
        proc = subprocess.run(["apt-get", "update"], capture_output=True, text=True)
        self.refreshed = True
        if proc.returncode != 0:
            raise CorpusBuildError(
                f"{why}, and `apt-get update` failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-800:]}. Fix apt's sources (is the network reachable?), "
                "then run `acodm corpus build` again"
            )


def pick_python_version(
    candidates: tuple[str, ...] = ("3.11", "3.12", "3.13", "3.10"), apt: AptLists | None = None
) -> str:
    """The Python whose stdlib packages this apt can download (3.11 on Debian 12); refreshes the
    apt lists once (through `apt`) when none is found."""
    apt = apt or AptLists()
    for attempt in range(2):
        for version in candidates:
            if has_candidate(f"libpython{version}-stdlib"):
                return version
        if attempt == 0 and not apt.refreshed:
            apt.refresh(
                f"no libpython3.x-stdlib package is downloadable (tried {', '.join(candidates)})"
            )
        else:
            break
    raise CorpusBuildError(
        f"no libpython3.x-stdlib package is downloadable (tried {', '.join(candidates)}), even after "
        "`apt-get update`; this release ships none of them: use corpus.source=tiny or local files"
    )


def host_release() -> str:
    """The Debian release whose apt sources the packages came from (for the manifest)."""
    path = Path("/etc/debian_version")
    return f"debian {path.read_text().strip()}" if path.exists() else "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_package(name: str, dest: Path, apt: AptLists | None = None) -> DebPackage:
    """`apt-get download name` into dest (no install), naming the package on failure. A missing
    candidate or a failed download refreshes the apt lists once (through `apt`) and retries."""
    apt = apt or AptLists()
    for attempt in range(2):
        before = set(dest.glob("*.deb"))
        proc = subprocess.run(
            ["apt-get", "download", name], cwd=dest, capture_output=True, text=True
        )
        new = sorted(set(dest.glob("*.deb")) - before)
        if proc.returncode == 0 and new:
            break
        error = proc.stderr.strip()[-800:] or "no .deb"
        if attempt == 0 and not apt.refreshed:
            apt.refresh(f"could not download Debian package {name!r} ({error.splitlines()[-1]})")
            continue
        raise CorpusBuildError(
            f"could not download Debian package {name!r}: {error}"
            + (
                " (after `apt-get update`: is it available in this release?)"
                if apt.refreshed
                else ""
            )
        )
    path = new[0]
    version = _run(["dpkg-deb", "-f", str(path), "Version"]).strip()
    return DebPackage(name, version, sha256_file(path), path.stat().st_size, path)


def unpack_package(deb: DebPackage, dest: Path) -> Path:
    root = dest / deb.name
    root.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb.path), str(root)])
    return root
