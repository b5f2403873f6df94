"""Run a command in its own PID, network and mount namespaces, with a private directory as /tmp.

Why: `ray start --head` wants Ray's default ports and `ray stop` (which `ray.cluster_utils.
AutoscalingCluster` runs before and after its cluster) kills every Ray process it can see. Inside
`unshare --pid --fork --mount-proc --net` the command sees only its own processes and its own
loopback interface, so neither the test session's Ray nor anyone else's on the machine is touched,
and the kernel ends every process the command left behind when it exits. Ray's session files go to
/tmp, which is the private directory here (bind-mounted), so they vanish with the test's tmp_path.

What lives under the real /tmp is hidden inside, except what the command runs from: the checkout
(its working directory) and the interpreter (the venv, its base installation, every link on the
way to the real executable). Those are bind-mounted back at the same paths inside the private
/tmp (`kept_paths`), so a checkout or a virtualenv under /tmp works like any other. The mount
namespace's propagation is private: none of these mounts is seen outside it.

Needs root (CI runs the suite as root) and the `unshare` and `ip` tools.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--net", "--propagation", "private"]
TMP = Path("/tmp")


def can_unshare() -> bool:
    """True where this process may create the namespaces (root, tools installed)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run([*UNSHARE, "true"], capture_output=True).returncode == 0


def _link_chain(path: Path) -> list[Path]:
    """`path` and every symlink target after it, to the real file (what exec walks through)."""
    chain = [Path(os.path.abspath(path))]
    while chain[-1].is_symlink() and len(chain) < 40:
        chain.append(Path(os.path.normpath(chain[-1].parent / os.readlink(chain[-1]))))
    return chain


def _prefix(executable: Path) -> Path:
    """An interpreter's installation (<prefix>/bin/python: its venv, or its stdlib's prefix), or the
    nearest of its directory and itself that is still below /tmp."""
    for candidate in (executable.parent.parent, executable.parent):
        if TMP in candidate.parents:
            return candidate
    return executable


def kept_paths(cwd: Path, python: str | os.PathLike = sys.executable) -> list[Path]:
    """The paths under the real /tmp that the isolated command needs: the checkout `cwd` and the
    interpreter `python` (its prefix and every link to it, plus this process's sys.prefix and base
    prefix), as given and resolved; outermost only, sorted."""
    wanted: list[Path] = [Path(cwd), Path(sys.prefix), Path(sys.base_prefix)]
    wanted += [_prefix(link) for link in _link_chain(Path(python))]
    paths = {Path(os.path.abspath(p)) for p in wanted} | {Path(os.path.realpath(p)) for p in wanted}
    under_tmp = {p for p in paths if TMP in p.parents}
    return sorted(p for p in under_tmp if not any(q in p.parents for q in under_tmp))


def isolated_script(private_tmp: Path, script: str, keep: Iterable[Path] = ()) -> str:
    """`script` preceded by what the namespaces need: the `keep` paths bind-mounted into the private
    /tmp at their own paths, the private /tmp (with those mounts: --rbind) and a live loopback."""
    lines = []
    for path in keep:
        point = private_tmp / path.relative_to(TMP)
        parent, point_q = shlex.quote(str(point.parent)), shlex.quote(str(point))
        make = f"mkdir -p {point_q}" if path.is_dir() else f"mkdir -p {parent} && touch {point_q}"
        lines += [make, f"mount --bind {shlex.quote(str(path))} {point_q}"]
    lines += [f"mount --rbind {shlex.quote(str(private_tmp))} /tmp", "ip link set lo up", script]
    return "\n".join(lines) + "\n"


def run_isolated(
    script: str,
    private_tmp: Path,
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    python: str | os.PathLike = sys.executable,
) -> subprocess.CompletedProcess:
    """Run `script` with `bash -euo pipefail` in the namespaces; `private_tmp` is its /tmp, with the
    checkout `cwd` and the interpreter `python` the script runs still at their paths."""
    private_tmp.mkdir(parents=True, exist_ok=True)
    keep = kept_paths(cwd, python)
    return subprocess.run(
        [*UNSHARE, "bash", "-euo", "pipefail", "-c", isolated_script(private_tmp, script, keep)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
