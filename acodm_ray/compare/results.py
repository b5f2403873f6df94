"""The comparison's summary from its finished runs (`summarize_comparison`): what was trained (the
target, each proxy stage), each method's headline over seeds and each run's own numbers; and the
machine it ran on."""

from __future__ import annotations

import os
import platform
from typing import Any

from acodm_ray.compare.configs import proxy_config, seeds_of, target_config
from acodm_ray.compare.figures import Spread
from acodm_ray.compare.headline import Yardsticks, headline_row, run_summary, yardsticks
from acodm_ray.compare.methods import REFERENCE, method_of, proxy_methods, split_method
from acodm_ray.compare.plan import RunSpec
from acodm_ray.compare.runs import RunData, load_run, runs_by_method
from acodm_ray.compare.stats import last_quarter_gain, mean_spread
from acodm_ray.compare.summary import (
    AgentShape,
    ComparisonSummary,
    HeadlineRow,
    ProxyRun,
    ProxyStage,
    RunSummary,
    TargetSetup,
)
from acodm_ray.config import ExperimentConfig, to_dict

__all__ = ["RunData", "load_run", "machine", "summarize", "summarize_comparison"]


def machine() -> dict[str, Any]:
    """Where the comparison runs (summary.json's "machine"; `summary.Machine` reads it)."""
    # lazy: torch takes a second; jobs/compare.py --help imports this package
    import torch

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        # lazy: ray, for its version only; jobs/compare.py --help imports this package
        import ray

        info["ray"] = ray.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        info["memory_gb"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1
        )
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    return info


def method_description(method: str) -> str:
    """The registry's description, and the proxy size of a <method>@<size> run."""
    size = split_method(method)[1]
    return method_of(method).description + (f" (proxy size {size})" if size else "")


def target_setup(cfg: ExperimentConfig, method: str, seed: int) -> TargetSetup:
    """The target every method trains, as `method`'s run of `seed` configures it (the budget is the
    same for all; the table's first lines say it once)."""
    t = target_config(cfg, method, seed)
    return TargetSetup(
        model=to_dict(t.model),
        steps=t.train.steps,
        seq_len=t.train.seq_len,
        micro_batch_size=t.train.micro_batch_size,
        grad_accum=t.train.grad_accum,
        tokens_per_step=t.train.seq_len
        * t.train.micro_batch_size
        * t.train.grad_accum
        * t.target.num_workers,
        eval_every=t.train.eval_every,
        eval_batches=t.train.eval_batches,
        num_workers=t.target.num_workers,
        cpus_per_worker=t.target.cpus_per_worker,
        state_layers=t.signals.state_layers,
    )


def proxy_stage(
    cfg: ExperimentConfig, specs: list[RunSpec], results: dict[str, dict], method: str
) -> ProxyStage:
    """How `method`'s proxy stage learned its policy, and each seed's stage that finished."""
    pcfg = proxy_config(cfg, cfg.compare.first_seed, method)
    done = {
        s.seed: results[s.key]
        for s in specs
        if s.kind == "proxy" and s.method == method and s.key in results
    }
    trainer = method_of(method).trainer
    rl = trainer == "rl"
    agent = pcfg.agent
    return ProxyStage(
        model=to_dict(pcfg.model),
        steps=pcfg.train.steps,
        trainer=trainer,
        algo=pcfg.rl.algo if rl else None,
        mixer=None if rl else pcfg.mixer.name,
        rl_iterations=pcfg.rl.iterations if rl else None,
        env_steps_per_iteration=pcfg.rl.min_sample_timesteps_per_iteration if rl else None,
        agent=AgentShape(
            actor_hidden=agent.actor_hidden,
            actor_layers=agent.actor_layers,
            critic_hidden=agent.critic_hidden,
            critic_layers=agent.critic_layers,
            gamma=agent.gamma,
            warmup_fraction=agent.warmup_fraction,
        )
        if rl
        else None,
        reward=pcfg.env.reward if rl else None,
        per_seed=cfg.compare.proxy_per_seed,
        runs={
            seed: ProxyRun(policy=r.get("policy"), wall_s=r.get("wall_s"), run_dir=r.get("run_dir"))
            for seed, r in done.items()
        },
        wall_s=mean_spread([r.get("wall_s") for r in done.values()]),
    )


def summarize_comparison(
    cfg: ExperimentConfig,
    specs: list[RunSpec],
    runs: dict[str, RunData],
    results: dict[str, dict],
    failures: dict[str, str],
) -> ComparisonSummary:
    """The summary of a comparison's finished runs (`runs`: the target runs read back; `results`:
    what every run returned, proxy stages included; `failures`: run key -> why). The invocation's
    fields (name, wall-clock, machine, files) are left for run_comparison to set."""
    methods = list(cfg.compare.methods)
    by_method = runs_by_method(specs, runs)
    domains = next(iter(runs.values())).domains if runs else []
    eval_domains = target_config(cfg, methods[0], cfg.compare.first_seed).train.eval_domains
    decoys = [d for d in domains if eval_domains and d not in eval_domains]
    proxies = {m: proxy_stage(cfg, specs, results, m) for m in proxy_methods(methods)}
    ys = yardsticks(by_method, domains, decoys)
    walls = {
        m: {s: results[f"{m}-seed{s}"].get("wall_s") for s in by_seed}
        for m, by_seed in by_method.items()
    }
    return ComparisonSummary(
        methods=methods,
        method_descriptions={m: method_description(m) for m in methods},
        seeds=seeds_of(cfg),
        domains=domains,
        reference=REFERENCE,
        target=target_setup(cfg, methods[0], cfg.compare.first_seed),
        failures=failures,
        proxies=proxies or None,
        static_baseline=ys.static,
        uniform_last_quarter_gain=_uniform_gain(by_method.get("uniform")),
        decoys=decoys,
        headline={m: _row(m, by_method, walls, ys, proxies) for m in methods},
        runs=_run_summaries(methods, by_method, walls, ys),
    )


def _uniform_gain(uniform: dict[int, RunData] | None) -> Spread | None:
    """The convergence check: how much uniform's average perplexity still fell over the last
    quarter of training (None without uniform: the key is then absent)."""
    if not uniform:
        return None
    return mean_spread(
        [last_quarter_gain(r.eval_steps, r.ppl["average"]) for r in uniform.values()]
    )


ByMethod = dict[str, dict[int, RunData]]  # method -> seed -> run
Walls = dict[str, dict[int, float | None]]  # method -> seed -> the run's wall-clock


def _row(
    method: str, by_method: ByMethod, walls: Walls, ys: Yardsticks, proxies: dict[str, ProxyStage]
) -> HeadlineRow | None:
    """`method`'s headline row; None (written as {"runs": 0}) when none of its runs finished."""
    if not by_method.get(method):
        return None
    stage = proxies.get(method)
    return headline_row(
        method, by_method[method], walls[method], ys, stage.wall_s if stage else None
    )


def _run_summaries(
    methods: list[str], by_method: ByMethod, walls: Walls, ys: Yardsticks
) -> dict[str, RunSummary]:
    """Every finished run by its key, method by method in the plan's order."""
    return {
        f"{m}-seed{s}": run_summary(m, s, r, walls[m][s], ys)
        for m in methods
        for s, r in by_method.get(m, {}).items()
    }


def summarize(
    cfg: ExperimentConfig,
    specs: list[RunSpec],
    runs: dict[str, RunData],
    results: dict[str, dict],
    failures: dict[str, str],
) -> dict[str, Any]:
    """`summarize_comparison` as the JSON dict run_comparison extends with the invocation's keys and
    writes as summary.json (compare/schedule.py still builds that dict; new code takes the types)."""
    return summarize_comparison(cfg, specs, runs, results, failures).to_json()
