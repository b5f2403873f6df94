"""Run a command in its own PID, network and mount namespaces, with a private directory as /tmp.

Why: `ray start --head` wants Ray's default ports and `ray stop` (which `ray.cluster_utils.
AutoscalingCluster` runs before and after its cluster) kills every Ray process it can see. Inside
`unshare --pid --fork --mount-proc --net` the command sees only its own processes and its own
loopback interface, so neither the test session's Ray nor anyone else's on the machine is touched,
and the kernel ends every process the command left behind when it exits. Ray's session files go to
/tmp, which is the private directory here (bind-mounted), so they vanish with the test's tmp_path.
What lives under the real /tmp is hidden inside: the checkout and the venv must not be under /tmp.

Needs root (CI runs the suite as root) and the `unshare` and `ip` tools.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--net"]


def can_unshare() -> bool:
    """True where this process may create the namespaces (root, tools installed)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run([*UNSHARE, "true"], capture_output=True).returncode == 0


def isolated_script(private_tmp: Path, script: str) -> str:
    """`script` preceded by what the namespaces need: the private /tmp and a live loopback."""
    return f"mount --bind {private_tmp} /tmp\nip link set lo up\n{script}\n"


def run_isolated(
    script: str,
    private_tmp: Path,
    env: dict[str, str],
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess:
    """Run `script` with `bash -euo pipefail` in the namespaces; `private_tmp` is its /tmp."""
    private_tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*UNSHARE, "bash", "-euo", "pipefail", "-c", isolated_script(private_tmp, script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
