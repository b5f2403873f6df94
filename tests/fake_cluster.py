"""A fake multi-node autoscaling Ray cluster on one machine, made from a deploy target's node types.

`ray.cluster_utils.AutoscalingCluster` starts a head whose autoscaler uses Ray's `fake_multinode`
provider: every worker "node" it launches is a local raylet (`ray._private.node.Node(head=False)`
started inside the autoscaler's monitor process), with the node type's resources. Ray's own
autoscaler tests use it. Two things differ here:
  - Ray 2.60's wheel lacks `autoscaler/_private/fake_multi_node/example.yaml`, which
    `AutoscalingCluster` reads as its base config: `FakeAutoscalingCluster` brings its own
    (`BASE_CONFIG`: the provider's options, no setup or start commands);
  - the node types are not invented: `scaled_node_types` takes a launcher config's
    `available_node_types` (deploy/aws.yaml) and keeps every resource name, custom ones included,
    shrinking only the CPU counts (and the node counts) to this machine. A manifest change that
    breaks scheduling breaks the cluster built from it.

`AutoscalingCluster.start()` runs `ray stop --force`, which kills every Ray process it can see:
use this only inside the namespaces of `tests/isolation.py`.

Node loss: the provider sets `RAY_OVERRIDE_NODE_ID_FOR_TESTING=<node id>` in each worker node's
raylet environment and the raylet's workers and agents inherit it, so `kill_node` finds every process
of one node in /proc and SIGKILLs them (what a machine that dies does to its processes). The provider
keeps the dead node in its list until the autoscaler terminates it for missing heartbeats
(`AUTOSCALER_HEARTBEAT_TIMEOUT_S`), then the autoscaler launches what the pending work needs. That
needs `ReplaceableFakeProvider`: Ray's fake provider leaves its nodes tagged `uninitialized`, which
the autoscaler's liveness check skips, so a dead node stayed in the cluster for good (counted
against `max_workers`, never replaced).
"""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path
from typing import Any

from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import STATUS_UP_TO_DATE, TAG_RAY_NODE_STATUS
from ray.cluster_utils import AutoscalingCluster

from acodm_ray.cluster import worker_node_types

HEAD_TYPE = "ray.head.default"  # the fake provider tags its head with this type name
NODE_ID_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
NODE_TYPE_ENV = "RAY_NODE_TYPE_NAME"

BASE_CONFIG: dict[str, Any] = {
    "cluster_name": "fake-multinode",
    "max_workers": 0,  # set from the node types
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 1.0,
    "provider": {
        "type": "external",
        "module": "tests.fake_cluster.ReplaceableFakeProvider",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    },
    "auth": {"ssh_user": "ubuntu"},
    "docker": {},
    "head_node_type": HEAD_TYPE,
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}


def scaled_resources(resources: dict[str, float], max_cpus: float) -> dict[str, float]:
    """The same resource names and counts, CPU capped at `max_cpus` (a head's CPU: 0 stays 0)."""
    out = dict(resources)
    if "CPU" in out:
        out["CPU"] = min(float(out["CPU"]), max_cpus)
    return out


def scaled_node_types(
    launcher: dict[str, Any], max_cpus: float, max_nodes: int, max_gpu_nodes: int = 0
) -> dict[str, dict[str, Any]]:
    """The launcher's worker node types for the fake provider: resources as `scaled_resources`,
    `min_workers` as written, `max_workers` capped at `max_nodes`, no cloud `node_config`.

    A type with GPUs keeps them, but at most `max_gpu_nodes` of it (default none: this machine has
    no GPU, our jobs here ask for none, and the autoscaler would otherwise launch GPU nodes for CPU
    work whenever the CPU type is at its small cap, which AWS's cap of 8 never is for these jobs)."""
    types = {}
    for name, spec in worker_node_types(launcher).items():
        resources = scaled_resources(spec.get("resources") or {}, max_cpus)
        cap = min(max_nodes, max_gpu_nodes) if resources.get("GPU", 0) > 0 else max_nodes
        types[name] = {
            "resources": resources,
            "min_workers": int(spec.get("min_workers", 0)),
            "max_workers": min(int(spec["max_workers"]), cap),
            "node_config": {},
        }
    return types


def head_resources(launcher: dict[str, Any]) -> dict[str, float]:
    """The head node type's resources (deploy targets: CPU 0, so no task or actor of ours runs there)."""
    return dict(launcher["available_node_types"][launcher["head_node_type"]].get("resources") or {})


class ReplaceableFakeProvider(FakeMultiNodeProvider):
    """Ray's fake multi-node provider, with every worker node it launched tagged up-to-date.

    The autoscaler tags a node `uninitialized` when it launches it, and Ray's fake provider keeps that
    tag (it runs no node updater and refuses `set_node_tags`). `StandardAutoscaler.
    terminate_unhealthy_nodes` only takes down up-to-date nodes, so with the fake provider a worker
    node whose raylet died was never terminated nor replaced. A cloud node is up-to-date once Ray runs
    on it, which it does here when `Node()` returns. Loaded by the autoscaler's monitor process as an
    `external` provider (the repository must be on its PYTHONPATH)."""

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with self.lock:
            before = set(self._nodes)
            super()._create_node_with_resources_and_labels(
                node_config, tags, count, resources, labels
            )
            for node_id in set(self._nodes) - before:
                self._nodes[node_id]["tags"][TAG_RAY_NODE_STATUS] = STATUS_UP_TO_DATE


class FakeAutoscalingCluster(AutoscalingCluster):
    """`AutoscalingCluster` with `BASE_CONFIG` instead of the example.yaml the wheel lacks."""

    def _generate_config(
        self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs
    ):
        if autoscaler_v2:
            raise ValueError("only the default autoscaler (v1) is set up here")
        config = copy.deepcopy(BASE_CONFIG)
        config["available_node_types"] = copy.deepcopy(worker_node_types)
        config["available_node_types"][HEAD_TYPE] = {
            "resources": dict(head_resources),
            "node_config": {},
            "max_workers": 0,
        }
        config["max_workers"] = sum(t["max_workers"] for t in worker_node_types.values())
        config.update(config_kwargs)
        return config

    @property
    def config(self) -> dict[str, Any]:
        return copy.deepcopy(self._config)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return dict(
        item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
    )


def node_processes() -> dict[str, list[int]]:
    """{node id: pids} of every worker node's processes (raylet, its workers and agents)."""
    out: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            node_id = _environ(int(entry.name)).get(NODE_ID_ENV)
            if node_id:
                out.setdefault(node_id, []).append(int(entry.name))
    return out


def node_types_by_id() -> dict[str, str]:
    """{node id: node type name} of the worker nodes that have live processes."""
    out = {}
    for node_id, pids in node_processes().items():
        for pid in pids:
            kind = _environ(pid).get(NODE_TYPE_ENV)
            if kind:
                out[node_id] = kind
                break
    return out


def kill_node(node_id: str) -> list[int]:
    """SIGKILL every process of worker node `node_id`; returns their pids."""
    pids = node_processes().get(node_id, [])
    if not pids:
        raise ValueError(f"no process of node {node_id} is running")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids
