"""What a Ray address answers, asked without ever hanging or touching the caller's Ray state.

Split out of `doctor` because probing a cluster is its own problem: the address may be down, may be
a dashboard URL, may need a token, or may hang in Ray's connect retries. So a closed port is found
with a plain socket first, and the real question (nodes, resources) is asked by a fresh interpreter
(`_PROBE`) under a timeout. `doctor` only turns the answers into report lines.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 30.0

# Run in a fresh interpreter, so a hanging connection or Ray's global state never touches the caller.
_PROBE = r"""
import json, sys
target = sys.argv[1]
out = {}
try:
    import ray
    out["version"] = ray.__version__
    if target.startswith(("http://", "https://")):
        from ray.util.state import list_nodes
        nodes = list_nodes(address=target, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
        total = {}
        for n in nodes:
            for k, v in (n.resources_total or {}).items():
                total[k] = total.get(k, 0) + v
        out.update(ok=True, nodes=len(nodes), total=total, available=None)
    else:
        kw = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if target == "--local":
            ray.init(**kw)
        else:
            ray.init(address=target, **kw)
        out.update(ok=True, nodes=sum(1 for n in ray.nodes() if n.get("Alive")),
                   total=ray.cluster_resources(), available=ray.available_resources())
        ray.shutdown()
except BaseException as err:
    msg = str(err).strip().splitlines()
    out.update(ok=False, error=f"{type(err).__name__}: {msg[0] if msg else ''}")
print("ACODM_PROBE " + json.dumps(out), flush=True)
"""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` and `http(s)://host[:port]` addresses; None for `auto`, `ray://`..."""
    if address.startswith(("http://", "https://")):
        u = urlsplit(address)
        return (u.hostname, u.port or (443 if u.scheme == "https" else 80)) if u.hostname else None
    host, sep, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if sep and host and port.isdigit() else None


def probe_cluster(
    target: str, timeout: float = PROBE_TIMEOUT_S, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Resources of the cluster at `target` (a RAY_ADDRESS value, or "--local" for a throwaway one)."""
    hp = _host_port(target) if target != "--local" else None
    if hp is not None:  # fail fast on a closed port instead of waiting for Ray's connect retries
        try:
            socket.create_connection(hp, timeout=min(5.0, timeout)).close()
        except OSError as err:
            return {
                "ok": False,
                "port_open": False,
                "error": f"cannot connect to {hp[0]}:{hp[1]} ({err.strerror or err})",
            }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, target],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no answer within {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("ACODM_PROBE "):
            return json.loads(line[len("ACODM_PROBE ") :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"probe exited with {proc.returncode}: {tail}"}


def _ray_address_file() -> Path:
    """Where `ray start --head` records its address; a plain `ray.init()` joins the cluster it names."""
    try:
        # lazy: the doctor runs where Ray is missing or broken (the except below), and fast
        from ray._common.utils import get_ray_address_file

        return Path(get_ray_address_file(None))
    except (ImportError, AttributeError):
        return Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"


def _port_open(address: str) -> bool:
    hp = _host_port(address)
    if hp is None:
        return False
    try:
        socket.create_connection(hp, timeout=3).close()
        return True
    except OSError:
        return False
