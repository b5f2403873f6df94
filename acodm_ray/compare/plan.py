"""The runs of a comparison, in the order they start: proxy stages, then the target runs; and the
comparison's `RunPlan` (every run's resolved config, checked), which `--dry-run` prints and the
job checks before it starts anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acodm_ray.compare.configs import (
    override_layers,
    proxy_config,
    proxy_key,
    seeds_of,
    target_config,
)
from acodm_ray.compare.methods import method_of, proxy_methods
from acodm_ray.config import ExperimentConfig
from acodm_ray.runplan import PlannedRun, RunPlan, make_plan


@dataclass
class RunSpec:
    key: str  # "proxy-seed0", "odm-seed0", ...
    kind: str  # "proxy" | "target"
    seed: int
    run_dir: Path
    method: str | None = None  # the target run's method, or the method the proxy stage learns for
    depends: str | None = None  # key of the proxy stage a proxy-mode target run needs


def plan(cfg: ExperimentConfig, out_dir: Path) -> list[RunSpec]:
    """Proxy stages first (the proxy-mode target runs wait for theirs), then the target runs, seed by
    seed (the online agent, the slowest, first within a seed)."""
    methods, seeds = cfg.compare.methods, seeds_of(cfg)
    proxy_seeds = seeds if cfg.compare.proxy_per_seed else seeds[:1]
    specs: list[RunSpec] = []
    for m in proxy_methods(methods):
        specs += [
            RunSpec(proxy_key(m, s), "proxy", s, out_dir / "proxy" / proxy_key(m, s), m)
            for s in proxy_seeds
        ]
    slow_first = sorted(
        methods, key=lambda m: method_of(m).kind != "online"
    )  # the slowest runs first: a shorter tail
    for s in seeds:
        for m in slow_first:
            dep = (
                proxy_key(m, s if cfg.compare.proxy_per_seed else seeds[0])
                if method_of(m).kind == "proxy"
                else None
            )
            specs.append(
                RunSpec(f"{m}-seed{s}", "target", s, out_dir / "runs" / f"{m}-seed{s}", m, dep)
            )
    return specs


def plan_runs(cfg: ExperimentConfig, out_dir: Path) -> RunPlan:
    """Every run of the comparison with the config it will get (`proxy_config`, `target_config`:
    a proxy-mode target run's policy is its proxy stage's, named in the plan), checked."""
    runs = []
    for spec in plan(cfg, out_dir):
        method = method_of(spec.method)
        if spec.kind == "proxy":
            run_cfg = proxy_config(cfg, spec.seed, spec.method)
            uses_agent = method.trainer == "rl" and run_cfg.rl.algo == "acodm"
        else:
            run_cfg = target_config(cfg, spec.method, spec.seed)
            uses_agent = method.kind == "online"
        layers = override_layers(cfg, spec.method, spec.kind)
        runs.append(
            PlannedRun(
                spec.key, spec.method, spec.seed, spec.kind, run_cfg, uses_agent, method.trainer,
                spec.depends, layers,
            )
        )  # fmt: skip
    counts = f"{sum(r.stage == 'proxy' for r in runs)} proxy stage(s), then the target runs"
    notes = [f"order: {counts}, {cfg.compare.concurrency} at a time"]
    return make_plan("compare", runs, out_dir, notes)
