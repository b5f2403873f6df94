"""The runs of a comparison, in the order they start: proxy stages, then the target runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acodm_ray.compare.configs import proxy_key, seeds_of
from acodm_ray.compare.methods import method_of, proxy_methods
from acodm_ray.config import ExperimentConfig


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
