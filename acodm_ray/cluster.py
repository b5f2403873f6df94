"""What a run asks of a Ray cluster, and whether a cluster's worker node types can give it.

Every resource request of the two stages is a config value (`rl.*` for the proxy stage's env runners
and learners, `target.*` for the Train workers), so whether a config can run on a cluster is a
question about shapes: does every per-actor bundle fit on some worker node type, with no more nodes
of each type than its `max_workers`? `tests/test_deploy.py` asks it for every preset against every
deploy target; `tests/test_autoscaling.py` asks it for its own jobs against the node types of
`deploy/aws.yaml` before it starts a fake cluster made from those same node types.

Node types are the launcher's `available_node_types` (`{name: {"resources": {...}, "max_workers": n}}`)
without the head: the deploy targets give the head `CPU: 0`, so nothing of ours is scheduled there.
"""

from __future__ import annotations

from typing import Any

from acodm_ray.config import ExperimentConfig


def proxy_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """One bundle per env runner and per learner actor of the proxy stage (jobs/proxy_rl.py)."""
    rl = cfg.rl
    out = [
        {"CPU": float(rl.num_cpus_per_env_runner), "GPU": float(rl.num_gpus_per_env_runner)}
    ] * rl.num_env_runners
    learner_cpu = 0.0 if rl.num_gpus_per_learner else 1.0  # RLlib's num_cpus_per_learner="auto"
    out += [{"CPU": learner_cpu, "GPU": float(rl.num_gpus_per_learner)}] * rl.num_learners
    return out


def target_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """One bundle per Ray Train worker of the target stage, custom resources included (as
    `acodm_ray.target.run_target` builds its ScalingConfig)."""
    tc = cfg.target
    gpu = (1.0 if tc.gpus_per_worker is None else float(tc.gpus_per_worker)) if tc.use_gpu else 0.0
    bundle = {
        "CPU": float(tc.cpus_per_worker),
        "GPU": gpu,
        **{k: float(v) for k, v in tc.resources_per_worker.items()},
    }
    return [bundle] * tc.num_workers


def job_bundles(cfg: ExperimentConfig) -> list[dict[str, float]]:
    """Both stages' bundles: what a config needs when its stages run one after the other."""
    return proxy_bundles(cfg) + target_bundles(cfg)


def worker_node_types(launcher: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The worker node types of a cluster launcher config (`ray up` YAML), the head left out."""
    head = launcher["head_node_type"]
    return {name: spec for name, spec in launcher["available_node_types"].items() if name != head}


def fits(bundles: list[dict[str, float]], node_types: dict[str, dict[str, Any]]) -> bool:
    """First fit of the bundles (largest GPU, then CPU, first) onto at most `max_workers` nodes of
    every type. A resource a node type does not list is 0 there; a zero request always fits."""
    nodes = [
        dict(spec.get("resources") or {})
        for spec in node_types.values()
        for _ in range(int(spec["max_workers"]))
    ]
    for bundle in sorted(
        bundles, key=lambda b: (b.get("GPU", 0.0), b.get("CPU", 0.0)), reverse=True
    ):
        node = next(
            (n for n in nodes if all(n.get(k, 0.0) >= v for k, v in bundle.items() if v > 0)), None
        )
        if node is None:
            return False
        for k, v in bundle.items():
            if v > 0:
                node[k] = node.get(k, 0.0) - v
    return True


__all__ = ["proxy_bundles", "target_bundles", "job_bundles", "worker_node_types", "fits"]
