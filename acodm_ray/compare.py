"""The paper's comparison at laptop scale: the same target model trained with uniform weights, natural
proportions, ODM, AC-ODM in proxy mode and AC-ODM in non-proxy mode, with the same token budget and
the same seeds, and the paper's headline figures computed from the runs' own records.

Library side (no RLlib import). `run_comparison` plans and schedules the runs; the AC-ODM proxy stage
(RLlib) comes in as a callable from the job layer (`policies/compare_proxy.py`). Every target run is
`acodm_ray.target.run_target` (Ray Train, the mixer served by a `PolicyServer`).

Config: the experiment config describes the target, `compare.target` overrides it for the target
runs and `compare.proxy` further for the proxy stage (a smaller model, its own steps and RL
iterations); `signals.state_layers` is set to the same count on both so the proxy's policy fits the
target's state. `compare.quick` (under `--quick`) shrinks everything for smoke tests.

Headline figures (`headline`), per seed and then mean ± sample standard deviation over seeds:
- steps to reach ODM's best average validation perplexity (ODM's best over its own run, same seed):
  the first evaluated step at which the method's average perplexity is <= that value; `None`
  ("not reached") when it never gets there; the ratio of those steps to ODM's own (steps to its best);
- final average and per-domain validation perplexity;
- per-step time (median over steps of the full training iteration on rank 0: mixer query, training
  step, mixer update, logging; from ranks/rank0.jsonl) and peak memory (worker process peak RSS,
  plus the policy server's peak RSS) against static mixing (uniform) of the same seed;
- wall-clock per run, and of the proxy stage for AC-ODM in proxy mode.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from acodm_ray.agent.config import PAPER_AGENT
from acodm_ray.config import (
    CompareConfig,
    ConfigError,
    ExperimentConfig,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    to_dict,
    validate,
)

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Method:
    """One way of choosing the target's domain weights.

    kind: "mixer" (a mixer runs online on the target; `overrides` go into the target config),
    "proxy" (a policy is learned on a smaller proxy and frozen on the target; `overrides` go into
    the proxy stage's config) or "online" (the AC-ODM agent learns on the target itself; `overrides`
    go into the target config). `shared` goes into the target AND the proxy config: what must be the
    same on both (the state layout's progress scale, the sampler of the paper's code).
    trainer (proxy kind): "rl" (RLlib trains `rl.algo` on DataMixingEnv and exports its policy) or
    "mixer" (the proxy pretrains with a mixer; its weight trajectory is replayed by progress).
    width_scale (proxy kind): multiplies the actor's and critic's hidden width."""

    description: str
    kind: str
    overrides: dict[str, Any] = field(default_factory=dict)
    trainer: str = "rl"
    width_scale: float | None = None
    shared: dict[str, Any] = field(default_factory=dict)


# What the paper's text states (acodm-paper) and what its published code runs (acodm-reference):
# our switches back to the paper's choices, on the proxy and, where they shape the state or the
# sampler, on the target too (docs/method.md).
PAPER_SHARED: dict[str, Any] = {"signals": {"progress_scale": 100.0}, "train": {"coverage": "iid"}}
PAPER_PROXY: dict[str, Any] = {"agent": dict(PAPER_AGENT), "signals": {"score": "paper"}}
REFERENCE_SHARED: dict[str, Any] = {"signals": {"progress_scale": 100.0}, "train": {"coverage": "forced"}}
REFERENCE_PROXY: dict[str, Any] = {"agent": {**PAPER_AGENT, "freeze_actor": True}, "signals": {"score": "paper"}}

METHODS: dict[str, Method] = {
    "uniform": Method("static, uniform weights", "mixer", {"mixer": {"name": "uniform"}}),
    "natural": Method("static, natural proportions (train tokens per domain)", "mixer", {"mixer": {"name": "natural"}}),
    "odm": Method("ODM: bandit on per-domain losses, online (smoothed mean)", "mixer",
                  {"mixer": {"name": "odm", "odm_variant": "smoothed_mean"}}),
    "odm-exp3": Method("ODM with the textbook EXP3 update, online", "mixer",
                       {"mixer": {"name": "odm", "odm_variant": "exp3"}}),
    "alignment": Method("gradient-alignment mixer, no RL (DoGE rule on AC-ODM's scores), online on the target",
                        "mixer", {"mixer": {"name": "alignment"}}),
    "alignment-proxy": Method("gradient-alignment mixer run on the proxy, its weight trajectory replayed by progress",
                              "proxy", {"mixer": {"name": "alignment"}}, trainer="mixer"),
    "acodm": Method("AC-ODM (ours, every fix on), proxy mode: policy learned with RLlib on a smaller proxy, "
                    "frozen on the target", "proxy"),
    "acodm-online": Method("AC-ODM (ours, every fix on), non-proxy mode: the agent learns online on the target",
                           "online"),
    "acodm-paper": Method("AC-ODM as the paper states it (mean-Q actor, z-scored zero-sum reward, i.i.d. "
                          "micro-batches, no floor, progress x 100), actor really trained, proxy mode", "proxy",
                          PAPER_PROXY, shared=PAPER_SHARED),
    "acodm-paper-online": Method("acodm-paper in non-proxy mode", "online", PAPER_PROXY, shared=PAPER_SHARED),
    "acodm-reference": Method("AC-ODM as the published code runs: ODM warm-up, then the actor at its random "
                              "init (its optimizer is never stepped), one forced micro-batch per domain, proxy mode",
                              "proxy", REFERENCE_PROXY, shared=REFERENCE_SHARED),
    "acodm-reference-online": Method("acodm-reference in non-proxy mode (what the published code does)", "online",
                                     REFERENCE_PROXY, shared=REFERENCE_SHARED),
    # ablations of our AC-ODM: one fix switched off each
    "acodm-iid": Method("ablation: acodm with i.i.d. micro-batches on the proxy (no domain coverage)", "proxy",
                        {"train": {"coverage": "iid"}}),
    "acodm-meanq": Method("ablation: acodm with the paper's actor objective -mean_i Q_i", "proxy",
                          {"agent": {"actor_objective": "mean"}}),
    "acodm-zscore": Method("ablation: acodm rewarded with the paper's zero-sum z-scored alignment", "proxy",
                           {"signals": {"score": "paper"}}),
    "acodm-cross": Method("variant: acodm rewarded with the cross terms only, <g_i, sum_{j != i} g_j> / running "
                          "scale (the self term's micro-batch noise removed)", "proxy", {"signals": {"score": "cross"}}),
    "acodm-noguard": Method("ablation: acodm without the weight floor and the entropy term", "proxy",
                            {"agent": {"weight_floor": 0.0, "entropy_coef": 0.0}}),
    "acodm-horizon": Method("ablation: acodm with the critic's values in per-step units (1 - gamma) Q instead of "
                            "relative to their mean magnitude", "proxy", {"agent": {"value_units": "horizon"}}),
    "acodm-paperwarmup": Method("ablation: acodm with the paper's warm-up (one imitation update per warm-up "
                                "decision, on every row) and a constant agent lr", "proxy",
                                {"agent": {"warmup_updates": None, "imitate_odm_only": False, "lr_schedule": "constant"}}),
    "acodm-gamma0": Method("AC-ODM proxy mode with gamma = 0 (the critic predicts the immediate reward: a "
                           "contextual bandit)", "proxy", {"agent": {"gamma": 0.0}}),
    "acodm-lossreward": Method("AC-ODM proxy mode rewarded by per-domain loss decrease instead of gradient alignment",
                               "proxy", {"env": {"reward": "loss"}}),
    "acodm-nowarmup": Method("AC-ODM proxy mode without the ODM warm-up and actor imitation", "proxy",
                             {"agent": {"warmup_fraction": 0.0, "warmup_updates": 0}}),
    "acodm-narrow": Method("AC-ODM proxy mode, actor and critic 4x narrower", "proxy", width_scale=0.25),
    "acodm-wide": Method("AC-ODM proxy mode, actor and critic 4x wider", "proxy", width_scale=4.0),
    "ppo": Method("RLlib PPO on the same env (scalar reward), policy transferred like AC-ODM's", "proxy",
                  {"rl": {"algo": "ppo"}}),
    "sac": Method("RLlib SAC on the same env (scalar reward), policy transferred like AC-ODM's", "proxy",
                  {"rl": {"algo": "sac"}}),
    "appo": Method("RLlib APPO on the same env (scalar reward), policy transferred like AC-ODM's", "proxy",
                   {"rl": {"algo": "appo"}}),
}
DEFAULT_METHODS = list(CompareConfig().methods)  # the paper's comparison (compare.methods' default)
SIZE_SEP = "@"  # "acodm@small": a proxy method with the proxy size compare.proxy_sizes["small"]
REFERENCE = "odm"  # the paper's headline: steps to reach ODM's best validation perplexity
STATIC_BASELINES = ("uniform", "natural")  # overheads are measured against the first one present

# --quick when the config has no `compare.quick` of its own: tiny model, few steps, one seed.
DEFAULT_QUICK: dict[str, Any] = {
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2},
    "train": {"seq_len": 32, "micro_batch_size": 4, "grad_accum": 8, "eval_batches": 1},  # 8 >= the bundled 7 domains
    "agent": {"actor_hidden": 32, "actor_layers": 2, "critic_hidden": 32, "critic_layers": 2,
              "batch_size": 4, "warmup_fraction": 0.25},
    "compare": {
        "seeds": 1,
        "target": {"train": {"steps": 8, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 8}},
        "proxy": {"model": {"hidden_size": 16}, "train": {"steps": 8},
                  "rl": {"iterations": 1, "min_sample_timesteps_per_iteration": 8, "checkpoint_every": 1}},
    },
}


class CompareError(ValueError):
    """A comparison cannot be set up (bad method list, incompatible proxy, ...)."""


# ---------------------------------------------------------------------- configuration


def split_method(name: str) -> tuple[str, str | None]:
    """"acodm@small" -> ("acodm", "small"); "odm" -> ("odm", None)."""
    base, sep, size = name.partition(SIZE_SEP)
    return base, (size if sep else None)


def method_of(name: str) -> Method:
    return METHODS[split_method(name)[0]]


def _valid_methods_text() -> str:
    proxy = [m for m, spec in METHODS.items() if spec.kind == "proxy"]
    return (f"{', '.join(METHODS)}; a proxy method ({', '.join(proxy)}) may take a proxy size from "
            f"compare.proxy_sizes as <method>{SIZE_SEP}<size>")


def parse_methods(methods: str | Sequence[str], sizes: dict[str, Any] | None = None) -> list[str]:
    """"uniform,odm" or ["uniform", "odm"] -> checked list (order kept, duplicates dropped). With
    `sizes` (compare.proxy_sizes) the size of every "<method>@<size>" is checked too."""
    items = methods.split(",") if isinstance(methods, str) else list(methods)
    out: list[str] = []
    for item in items:
        name = str(item).strip()
        if name and name not in out:
            out.append(name)
    unknown = []
    for name in out:
        base, size = split_method(name)
        if base not in METHODS or (size is not None and (METHODS[base].kind != "proxy" or not size)):
            unknown.append(name)
        elif size is not None and sizes is not None and size not in sizes:
            raise CompareError(f"method {name!r}: no proxy size {size!r} in compare.proxy_sizes "
                               f"(sizes: {sorted(sizes) or 'none'})")
    if unknown:
        raise CompareError(f"unknown method(s) {unknown}; valid methods are: {_valid_methods_text()}")
    if not out:
        raise CompareError(f"no method given; valid methods are: {_valid_methods_text()}")
    return out


def proxy_methods(methods: Sequence[str]) -> list[str]:
    return [m for m in methods if method_of(m).kind == "proxy"]


def load_compare_config(path: str | Path | None, overrides: list[str] | None = None,
                        quick: bool = False) -> ExperimentConfig:
    """The config file, then (under `quick`) its `compare.quick` section or `DEFAULT_QUICK`, then the
    `--set` overrides (which win over quick)."""
    data = read_yaml(path) if path is not None else {}
    cli = parse_overrides(overrides)
    if quick:
        probe = from_dict(ExperimentConfig, deep_merge(data, cli))
        data = deep_merge(data, probe.compare.quick or DEFAULT_QUICK)
    cfg = from_dict(ExperimentConfig, deep_merge(data, cli))
    validate(cfg)
    validate_compare(cfg)
    return cfg


def validate_compare(cfg: ExperimentConfig) -> None:
    c = cfg.compare
    try:
        c.methods = parse_methods(c.methods, c.proxy_sizes)
    except CompareError as err:
        raise ConfigError(f"compare.methods: {err}") from err
    if c.seeds < 1:
        raise ConfigError(f"compare.seeds must be >= 1, got {c.seeds}")
    if c.concurrency < 1:
        raise ConfigError(f"compare.concurrency must be >= 1, got {c.concurrency}")
    if c.proxy_cpus <= 0 or c.proxy_gpus < 0:
        raise ConfigError(f"compare.proxy_cpus must be positive and compare.proxy_gpus >= 0, got {c.proxy_cpus}, {c.proxy_gpus}")
    if c.state_layers is not None and c.state_layers < 1:
        raise ConfigError(f"compare.state_layers must be >= 1, got {c.state_layers}")
    for key in ("target", "proxy"):
        if "compare" in getattr(c, key):
            raise ConfigError(f"compare.{key} cannot hold a compare section")
    for size, over in c.proxy_sizes.items():
        if not isinstance(over, dict) or "compare" in over:
            raise ConfigError(f"compare.proxy_sizes.{size} must be a config override without a compare section")
    tgt = target_config(cfg, c.methods[0], c.first_seed)  # refuses bad override keys now, not mid-run
    if tgt.model.num_layers < state_layers(cfg):
        raise ConfigError(f"compare.state_layers = {state_layers(cfg)} but the target has only "
                          f"{tgt.model.num_layers} layer(s)")
    for method in proxy_methods(c.methods):
        prx = proxy_config(cfg, c.first_seed, method)
        if prx.model.num_layers < state_layers(cfg):
            raise ConfigError(
                f"the proxy of {method} has {prx.model.num_layers} layer(s) but the state tracks {state_layers(cfg)} "
                f"(compare.state_layers, or the target's every-other-layer count for "
                f"{tgt.model.num_layers} layers); give the proxy more layers or set compare.state_layers"
            )


def _build(data: dict[str, Any], where: str) -> ExperimentConfig:
    try:
        cfg = from_dict(ExperimentConfig, data)
        validate(cfg)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    return cfg


def state_layers(cfg: ExperimentConfig) -> int:
    """Tracked matrices in the state of proxy and target alike (policy transfer needs one size)."""
    from acodm_ray.model import state_layer_indices

    if cfg.compare.state_layers is not None:
        return cfg.compare.state_layers
    tgt = deep_merge(to_dict(cfg), cfg.compare.target)
    if (tgt.get("signals") or {}).get("state_layers") is not None:
        return int(tgt["signals"]["state_layers"])
    return len(state_layer_indices(int(tgt["model"]["num_layers"])))


def _common(data: dict[str, Any], cfg: ExperimentConfig, seed: int) -> dict[str, Any]:
    data = deep_merge(data, {"train": {"seed": int(seed)}, "signals": {"state_layers": state_layers(cfg)}})
    data["compare"] = to_dict(dataclasses.replace(cfg.compare, quick={}))
    return data


def target_config(cfg: ExperimentConfig, method: str, seed: int, policy: str | None = None,
                  server_name: str | None = None) -> ExperimentConfig:
    """The target run of `method` with `seed`: config + compare.target + the method's mixer."""
    parse_methods([method])
    spec = method_of(method)
    data = _common(deep_merge(to_dict(cfg), cfg.compare.target), cfg, seed)
    target = {"policy": None, "online_acodm": False}
    data = deep_merge(data, spec.shared)
    if spec.kind == "mixer":
        data = deep_merge(data, spec.overrides)
    elif spec.kind == "proxy":
        target["policy"] = policy  # None while validating: the proxy stage makes it
    else:  # online
        target["online_acodm"] = True
        data = deep_merge(data, spec.overrides)
        data = deep_merge(data, {"mixer": {"name": "odm"}})  # the agent's warm-up behaviour is ODM
    if server_name:
        target["server_name"] = server_name
    data = deep_merge(data, {"target": target})
    return _build(data, f"compare.target ({method}, seed {seed})")


def proxy_config(cfg: ExperimentConfig, seed: int, method: str = "acodm") -> ExperimentConfig:
    """The proxy stage of `method` (a proxy-kind method, optionally "<method>@<size>") and `seed`:
    config + compare.target + compare.proxy + compare.proxy_sizes[size] + the method's overrides."""
    base, size = split_method(method)
    spec = METHODS[base]
    if spec.kind != "proxy":
        raise CompareError(f"method {method!r} has no proxy stage")
    data = deep_merge(deep_merge(to_dict(cfg), cfg.compare.target), cfg.compare.proxy)
    if size is not None:
        if size not in cfg.compare.proxy_sizes:
            raise CompareError(f"no proxy size {size!r} in compare.proxy_sizes (sizes: {sorted(cfg.compare.proxy_sizes)})")
        data = deep_merge(data, cfg.compare.proxy_sizes[size])
    data = deep_merge(_common(data, cfg, seed), {"rl": {"algo": "acodm"}})
    data = deep_merge(deep_merge(data, spec.shared), spec.overrides)
    if spec.width_scale is not None:
        agent = data.setdefault("agent", {})
        for key in ("actor_hidden", "critic_hidden"):
            agent[key] = max(4, int(round(int(agent.get(key, getattr(cfg.agent, key))) * spec.width_scale)))
    return _build(data, f"compare.proxy ({method}, seed {seed})")


def proxy_key(method: str, seed: int) -> str:
    """The proxy stage's key and run-dir name ("proxy-seed0" for plain acodm, as before)."""
    return f"proxy-seed{seed}" if method == "acodm" else f"proxy-{method}-seed{seed}"


def seeds_of(cfg: ExperimentConfig) -> list[int]:
    return [cfg.compare.first_seed + i for i in range(cfg.compare.seeds)]


# ---------------------------------------------------------------------- planning and scheduling


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
        specs += [RunSpec(proxy_key(m, s), "proxy", s, out_dir / "proxy" / proxy_key(m, s), m) for s in proxy_seeds]
    slow_first = sorted(methods, key=lambda m: method_of(m).kind != "online")  # the slowest runs first: a shorter tail
    for s in seeds:
        for m in slow_first:
            dep = proxy_key(m, s if cfg.compare.proxy_per_seed else seeds[0]) if method_of(m).kind == "proxy" else None
            specs.append(RunSpec(f"{m}-seed{s}", "target", s, out_dir / "runs" / f"{m}-seed{s}", m, dep))
    return specs


WALL_FILE = "compare_wall.json"  # in each run dir: the run's wall-clock, kept for --resume
# (proxy cfg, run dir, overwrite, trainer=Method.trainer) -> summary with "policy"
ProxyRunner = Callable[..., dict]
TargetRunner = Callable[..., dict]  # run_target(cfg, run_dir, resume=, overwrite=)


def _finished(run_dir: Path, steps: int | None = None) -> dict | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if steps is not None and summary.get("steps") != steps:
        return None
    return summary


def run_comparison(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    proxy_runner: ProxyRunner | None,
    target_runner: TargetRunner | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quick: bool = False,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Run every (method, seed) and the proxy stages, then write summary.json, table.md and the plots
    into `out_dir`. With `resume`, runs that already finished are read back instead of rerun. A failed
    run is recorded under "failures" (its dependants too) and the others go on."""
    from acodm_ray.rundir import prepare_run_dir, write_config, write_json
    from acodm_ray.tracking import ResultLogger, require_backends

    require_backends(cfg)
    if target_runner is None:
        from acodm_ray.target import run_target as target_runner
    validate_compare(cfg)
    if proxy_methods(cfg.compare.methods) and proxy_runner is None:
        raise CompareError(f"methods {proxy_methods(cfg.compare.methods)} need a proxy runner (policies.compare_proxy)")
    out_dir = prepare_run_dir(Path(out_dir).expanduser().resolve(), resume=resume, overwrite=overwrite)
    cfg = shared_mlflow_store(cfg, out_dir)
    # the comparison's own MLflow / W&B run (and the store's experiment) exist before any run starts
    ResultLogger(dataclasses.replace(cfg.tracking, wandb=False), out_dir, params=to_dict(cfg), resume=resume,
                 tensorboard=False).close()
    previous = json.loads((out_dir / "summary.json").read_text()) if resume and (out_dir / "summary.json").is_file() else {}
    write_config(out_dir, cfg)
    specs = plan(cfg, out_dir)
    tag = out_dir.name
    results: dict[str, dict] = {}
    failures: dict[str, str] = {}
    started = time.perf_counter()

    def earlier_wall(spec: RunSpec) -> float | None:
        path = spec.run_dir / WALL_FILE
        if path.is_file():
            return json.loads(path.read_text()).get("wall_s")
        if spec.kind == "proxy":
            stage = (previous.get("proxies") or {}).get(spec.method) or (previous.get("proxy") if spec.method == "acodm" else None)
            return (((stage or {}).get("runs") or {}).get(str(spec.seed)) or {}).get("wall_s")
        return ((previous.get("runs") or {}).get(spec.key) or {}).get("wall_s")

    def execute(spec: RunSpec) -> dict:
        t0 = time.perf_counter()
        if spec.kind == "proxy":
            pcfg = proxy_config(cfg, spec.seed, spec.method)
            done = _finished(spec.run_dir) if resume else None
            if done and done.get("policy") and Path(done["policy"]).is_dir():
                return {**done, "skipped": True, "wall_s": earlier_wall(spec), "run_dir": str(spec.run_dir)}
            summary = proxy_runner(pcfg, spec.run_dir, True, trainer=method_of(spec.method).trainer)
        else:
            policy = results[spec.depends]["policy"] if spec.depends else None
            tcfg = target_config(cfg, spec.method, spec.seed, policy=policy, server_name=f"cmp-{tag}-{spec.key}")
            done = _finished(spec.run_dir, tcfg.train.steps) if resume else None
            if done:
                return {**done, "skipped": True, "wall_s": earlier_wall(spec)}
            summary = target_runner(tcfg, spec.run_dir, resume=False, overwrite=True)
        summary = dict(summary)
        summary["wall_s"] = time.perf_counter() - t0
        write_json(spec.run_dir / WALL_FILE, {"key": spec.key, "wall_s": summary["wall_s"]})
        return summary

    pending = list(specs)
    running: dict[Any, RunSpec] = {}
    with ThreadPoolExecutor(max_workers=cfg.compare.concurrency) as pool:
        while pending or running:
            for spec in list(pending):
                if spec.depends and spec.depends in failures:
                    pending.remove(spec)
                    failures[spec.key] = f"not run: {spec.depends} failed"
            while len(running) < cfg.compare.concurrency:
                ready = next((s for s in pending if not s.depends or s.depends in results), None)
                if ready is None:
                    break
                pending.remove(ready)
                log.info("compare: starting %s", ready.key)
                running[pool.submit(execute, ready)] = ready
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                spec = running.pop(fut)
                try:
                    results[spec.key] = fut.result()
                    log.info("compare: %s %s", spec.key, "finished earlier: read back" if results[spec.key].get("skipped")
                             else f"done in {results[spec.key].get('wall_s') or 0.0:.0f} s")
                except Exception as err:  # keep going; reported in the summary
                    log.exception("compare: %s failed", spec.key)
                    failures[spec.key] = f"{type(err).__name__}: {err}"
    wall = time.perf_counter() - started

    runs = {s.key: load_run(s.run_dir) for s in specs if s.kind == "target" and s.key in results}
    summary = summarize(cfg, specs, runs, results, failures)
    summary.update({
        "name": out_dir.name, "config": config_path, "quick": quick, "out_dir": str(out_dir),
        "wall_clock_s": wall + float(previous.get("wall_clock_s") or 0.0), "wall_clock_s_this_invocation": wall,
        "resumed": bool(resume), "machine": machine(), "concurrency": cfg.compare.concurrency,
    })
    summary["files"] = write_outputs(summary, runs, specs, out_dir)
    write_json(out_dir / "summary.json", summary)
    # the comparison's own tracked run: its headline figures, table, plots and summary
    with ResultLogger(cfg, out_dir, params=to_dict(cfg), resume=True, tensorboard=False) as tracker:
        tracker.log({"headline": summary["headline"], "wall_clock_s": summary["wall_clock_s"]}, step=0)
        tracker.log_artifacts({"results": [out_dir / "summary.json", *map(Path, summary["files"].values())]})
    return summary


def shared_mlflow_store(cfg: ExperimentConfig, out_dir: Path) -> ExperimentConfig:
    """With tracking.mlflow and no tracking URI, every run of the comparison logs into one local
    store, <out_dir>/mlruns (one MLflow run per run dir), so one `mlflow ui` shows them all."""
    tc = cfg.tracking
    if not tc.mlflow or tc.mlflow_tracking_uri:
        return cfg
    return dataclasses.replace(cfg, tracking=dataclasses.replace(tc, mlflow_tracking_uri=(out_dir / "mlruns").as_uri()))


# ---------------------------------------------------------------------- reading a run back


@dataclass
class RunData:
    """What the comparison needs from one target run directory."""

    domains: list[str]
    eval_steps: list[int]
    ppl: dict[str, list[float]]  # "average" and every domain -> values at eval_steps
    weights: np.ndarray  # [steps, K], the weights trained with at every step
    step_seconds: list[float]  # full training iteration on rank 0, per step
    mixer_seconds: list[float]  # that iteration minus the training step inside it (paired, same step)
    worker_peak_rss_mb: float | None
    server_peak_rss_mb: float | None
    seconds: float | None  # run_target's own wall-clock
    summary: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def load_run(run_dir: str | Path) -> RunData:
    from acodm_ray.metrics import read_metrics

    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    domains = list(summary["domains"])
    steps, evals = read_metrics(run_dir)
    rank0 = _jsonl(run_dir / "ranks" / "rank0.jsonl")
    train_s = {int(r["step"]): float(r["seconds"]) for r in steps if r.get("seconds") is not None}
    if rank0:
        seconds = [float(r["seconds"]) for r in rank0]
        rss = [float(r["max_rss_mb"]) for r in rank0 if r.get("max_rss_mb") is not None]
        mixer = [float(r["seconds"]) - train_s[int(r["step"])] for r in rank0 if int(r["step"]) in train_s]
    else:  # rank logs off: the training step's own time, no memory
        seconds, rss, mixer = list(train_s.values()), [], []
    keys = ["average", *domains]
    return RunData(
        domains=domains,
        eval_steps=[int(r["step"]) for r in evals],
        ppl={k: [float(r[f"val_ppl/{k}"]) for r in evals] for k in keys},
        weights=np.array([[r[f"weight/{d}"] for d in domains] for r in steps], dtype=float).reshape(len(steps), len(domains)),
        step_seconds=seconds,
        mixer_seconds=mixer,
        worker_peak_rss_mb=max(rss) if rss else None,
        server_peak_rss_mb=(summary.get("server") or {}).get("max_rss_mb"),
        seconds=summary.get("seconds"),
        summary=summary,
        run_dir=str(run_dir),
    )


# ---------------------------------------------------------------------- the headline computations


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float, np.floating, np.integer)) and math.isfinite(float(x))


def steps_to_reach(steps: Sequence[int], values: Sequence[float], target: float) -> int | None:
    """First step whose value is <= target (lower is better); None if it never gets there."""
    for s, v in zip(steps, values):
        if _finite(v) and float(v) <= target:
            return int(s)
    return None


def best_point(steps: Sequence[int], values: Sequence[float]) -> tuple[int, float] | None:
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if _finite(v)]
    if not pairs:
        return None
    value = min(v for _, v in pairs)
    return next(p for p in pairs if p[1] == value)


def mean_spread(values: Sequence[float | None]) -> dict[str, Any] | None:
    """Mean, sample standard deviation (0 for one value), min, max and count of the finite values."""
    xs = [float(v) for v in values if _finite(v)]
    if not xs:
        return None
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
            "min": min(xs), "max": max(xs), "n": len(xs)}


def steps_to_reference(curves: dict[str, dict[int, tuple[Sequence[int], Sequence[float]]]],
                       reference: str = REFERENCE) -> dict[str, dict[int, dict[str, Any]]]:
    """Per method and seed: the reference's best value of that seed (`target`), the steps the method
    needs to reach it (None: not reached) and their ratio to the steps the reference needs (its
    first step at its best). `curves`: {method: {seed: (eval steps, average val ppl)}}."""
    if reference not in curves:
        raise CompareError(f"the reference method {reference!r} has no runs")
    out: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in curves}
    for seed, (ref_steps, ref_values) in curves[reference].items():
        ref_best = best_point(ref_steps, ref_values)
        if ref_best is None:
            continue
        ref_step, target = ref_best
        for method, by_seed in curves.items():
            if seed not in by_seed:
                continue
            steps = steps_to_reach(*by_seed[seed], target)
            out[method][seed] = {"target": target, "steps": steps, "reference_steps": ref_step,
                                 "ratio": None if steps is None else steps / ref_step}
    return out


def steps_to_final_of(curves: dict[str, dict[int, tuple[Sequence[int], Sequence[float]]]],
                      baseline: str) -> dict[str, dict[int, dict[str, Any]]]:
    """Per method and seed: the first evaluated step at which the method's average perplexity is at
    or below `baseline`'s FINAL value of the same seed (None: never), and its ratio to the baseline's
    own number of steps (its last evaluated step)."""
    out: dict[str, dict[int, dict[str, Any]]] = {m: {} for m in curves}
    for seed, (b_steps, b_values) in curves.get(baseline, {}).items():
        if not b_values or not _finite(b_values[-1]):
            continue
        target, total = float(b_values[-1]), int(b_steps[-1])
        for method, by_seed in curves.items():
            if seed in by_seed:
                steps = steps_to_reach(*by_seed[seed], target)
                out[method][seed] = {"target": target, "steps": steps, "reference_steps": total,
                                     "ratio": None if steps is None else steps / total}
    return out


def last_quarter_gain(steps: Sequence[int], values: Sequence[float]) -> float | None:
    """Relative improvement of the curve over the last quarter of training: 1 - v(T) / v(3T/4), with
    v(3T/4) the value at the last evaluated step at or before 3T/4 (the convergence check)."""
    pairs = [(int(s), float(v)) for s, v in zip(steps, values) if _finite(v)]
    if len(pairs) < 2:
        return None
    total = pairs[-1][0]
    before = [v for s, v in pairs if s <= 0.75 * total]
    return None if not before else 1.0 - pairs[-1][1] / before[-1]


def headline_steps(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean ± spread over seeds of the steps and ratios (of the seeds that reached the target)."""
    reached = [r for r in per_seed.values() if r["steps"] is not None]
    return {
        "seeds": len(per_seed),
        "reached": len(reached),
        "steps": mean_spread([r["steps"] for r in reached]),
        "ratio": mean_spread([r["ratio"] for r in reached]),
        "per_seed": {str(s): r for s, r in per_seed.items()},
    }


def overhead_pct(values: dict[int, float | None], baseline: dict[int, float | None]) -> dict[str, Any] | None:
    """(value / baseline - 1) * 100 per seed (same seed), then mean ± spread."""
    pct = [100.0 * (values[s] / baseline[s] - 1.0) for s in values
           if _finite(values.get(s)) and _finite(baseline.get(s)) and baseline[s] > 0]
    return mean_spread(pct)


# ---------------------------------------------------------------------- summary


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine(),
                            "torch": torch.__version__,
                            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        pass
    return info


def _by_method(specs: list[RunSpec], runs: dict[str, RunData]) -> dict[str, dict[int, RunData]]:
    out: dict[str, dict[int, RunData]] = {}
    for s in specs:
        if s.kind == "target" and s.key in runs:
            out.setdefault(s.method, {})[s.seed] = runs[s.key]
    return out


DECOY_POINTS = (0.0, 0.1, 0.25, 0.5, 1.0)  # where in training the decoys' weight is reported


def decoy_weight_curve(weights_by_seed: dict[int, np.ndarray], idx: list[int]) -> dict[str, Any]:
    """The weight a method put on the decoy domains `idx` (summed), at the fractions DECOY_POINTS of
    training (mean ± spread over seeds), and its mean over the whole run."""
    points: dict[str, Any] = {}
    for frac in DECOY_POINTS:
        vals = [float(w[min(len(w) - 1, int(round(frac * (len(w) - 1)))), idx].sum()) for w in weights_by_seed.values() if len(w)]
        points[f"{frac:g}"] = mean_spread(vals)
    overall = mean_spread([float(w[:, idx].sum(axis=1).mean()) for w in weights_by_seed.values() if len(w)])
    return {"at": points, "mean": overall}


def summarize(cfg: ExperimentConfig, specs: list[RunSpec], runs: dict[str, RunData],
              results: dict[str, dict], failures: dict[str, str]) -> dict[str, Any]:
    methods = [m for m in cfg.compare.methods]
    by_method = _by_method(specs, runs)
    domains = next(iter(runs.values())).domains if runs else []
    tcfg = target_config(cfg, methods[0], cfg.compare.first_seed)
    summary: dict[str, Any] = {
        "methods": methods,
        "method_descriptions": {m: method_of(m).description + (f" (proxy size {split_method(m)[1]})" if split_method(m)[1] else "")
                                for m in methods},
        "seeds": seeds_of(cfg),
        "domains": domains,
        "reference": REFERENCE,
        "target": {"model": to_dict(tcfg.model), "steps": tcfg.train.steps, "seq_len": tcfg.train.seq_len,
                   "micro_batch_size": tcfg.train.micro_batch_size, "grad_accum": tcfg.train.grad_accum,
                   "tokens_per_step": tcfg.train.seq_len * tcfg.train.micro_batch_size * tcfg.train.grad_accum
                   * tcfg.target.num_workers,
                   "eval_every": tcfg.train.eval_every, "eval_batches": tcfg.train.eval_batches,
                   "num_workers": tcfg.target.num_workers, "cpus_per_worker": tcfg.target.cpus_per_worker,
                   "state_layers": tcfg.signals.state_layers},
        "failures": failures,
    }
    proxies: dict[str, dict[str, Any]] = {}
    for method in proxy_methods(methods):
        pcfg = proxy_config(cfg, cfg.compare.first_seed, method)
        stages = {s.seed: results[s.key] for s in specs if s.kind == "proxy" and s.method == method and s.key in results}
        trainer = method_of(method).trainer
        stage = {
            "model": to_dict(pcfg.model), "steps": pcfg.train.steps, "trainer": trainer, "algo": None, "mixer": None,
            "rl_iterations": None, "env_steps_per_iteration": None, "agent": None, "reward": None,
            "per_seed": cfg.compare.proxy_per_seed,
            "runs": {str(seed): {"policy": r.get("policy"), "wall_s": r.get("wall_s"), "run_dir": r.get("run_dir")}
                     for seed, r in stages.items()},
            "wall_s": mean_spread([r.get("wall_s") for r in stages.values()]),
        }
        if trainer == "rl":
            stage.update(algo=pcfg.rl.algo, rl_iterations=pcfg.rl.iterations,
                         env_steps_per_iteration=pcfg.rl.min_sample_timesteps_per_iteration, reward=pcfg.env.reward,
                         agent={k: getattr(pcfg.agent, k) for k in ("actor_hidden", "actor_layers", "critic_hidden",
                                                                    "critic_layers", "gamma", "warmup_fraction")})
        else:
            stage["mixer"] = pcfg.mixer.name
        proxies[method] = stage
    if proxies:
        summary["proxies"] = proxies
        summary["proxy"] = proxies.get("acodm") or next(iter(proxies.values()))

    static = next((m for m in STATIC_BASELINES if m in by_method), None)
    summary["static_baseline"] = static
    curves = {m: {seed: (r.eval_steps, r.ppl["average"]) for seed, r in by_seed.items()} for m, by_seed in by_method.items()}
    to_ref = steps_to_reference(curves) if REFERENCE in curves else {}
    to_uniform = steps_to_final_of(curves, "uniform") if "uniform" in curves else {}
    if "uniform" in curves:
        summary["uniform_last_quarter_gain"] = mean_spread(
            [last_quarter_gain(*curve) for curve in curves["uniform"].values()])
    decoys = [d for d in domains if tcfg.train.eval_domains and d not in tcfg.train.eval_domains]
    summary["decoys"] = decoys
    table: dict[str, Any] = {}
    per_run: dict[str, dict[str, Any]] = {}
    for m in methods:
        by_seed = by_method.get(m, {})
        if not by_seed:
            table[m] = {"runs": 0}
            continue
        step_ms = {s: 1000.0 * float(np.median(r.step_seconds)) if r.step_seconds else None for s, r in by_seed.items()}
        mixer_ms = {s: 1000.0 * float(np.median(r.mixer_seconds)) if r.mixer_seconds else None for s, r in by_seed.items()}
        mixer_pct = {s: 100.0 * mixer_ms[s] / (step_ms[s] - mixer_ms[s])
                     if _finite(mixer_ms[s]) and _finite(step_ms[s]) and step_ms[s] > mixer_ms[s] else None for s in by_seed}
        worker = {s: r.worker_peak_rss_mb for s, r in by_seed.items()}
        total = {s: (r.worker_peak_rss_mb + r.server_peak_rss_mb)
                 if _finite(r.worker_peak_rss_mb) and _finite(r.server_peak_rss_mb) else None for s, r in by_seed.items()}
        wall = {s: results[f"{m}-seed{s}"].get("wall_s") for s in by_seed}
        final = {k: mean_spread([r.ppl[k][-1] if r.ppl[k] else None for r in by_seed.values()])
                 for k in ["average", *domains]}
        best_avg = mean_spread([(best_point(r.eval_steps, r.ppl["average"]) or (None, None))[1] for r in by_seed.values()])
        weights = np.mean([r.weights[-1] for r in by_seed.values() if len(r.weights)], axis=0)
        entry: dict[str, Any] = {
            "runs": len(by_seed),
            "final_val_ppl": final,
            "best_average_val_ppl": best_avg,
            "step_ms": mean_spread(list(step_ms.values())),
            "mixer_ms": mean_spread(list(mixer_ms.values())),
            "mixer_pct_of_step": mean_spread(list(mixer_pct.values())),
            "worker_peak_rss_mb": mean_spread(list(worker.values())),
            "peak_rss_mb": mean_spread(list(total.values())),
            "wall_s": mean_spread(list(wall.values())),
            "final_weights": {d: float(w) for d, w in zip(domains, weights)},
            "max_final_weight": {"domain": domains[int(np.argmax(weights))], "weight": float(np.max(weights))},
            "max_final_weight_per_seed": {
                str(s): {"domain": domains[int(np.argmax(r.weights[-1]))], "weight": float(np.max(r.weights[-1]))}
                for s, r in by_seed.items() if len(r.weights)},
        }
        if m in to_ref:
            entry["steps_to_reference"] = headline_steps(to_ref[m])
        if m in to_uniform:
            entry["steps_to_uniform_final"] = headline_steps(to_uniform[m])
        if decoys:
            idx = [domains.index(d) for d in decoys]
            entry["decoy_weight"] = decoy_weight_curve({s: r.weights for s, r in by_seed.items()}, idx)
        if static and m != static:
            b = by_method[static]
            entry["step_time_overhead_pct"] = overhead_pct(step_ms, {s: 1000.0 * float(np.median(r.step_seconds))
                                                                      if r.step_seconds else None for s, r in b.items()})
            entry["memory_overhead_pct"] = overhead_pct(total, {s: (r.worker_peak_rss_mb or 0) + (r.server_peak_rss_mb or 0)
                                                                 if _finite(r.worker_peak_rss_mb) and _finite(r.server_peak_rss_mb)
                                                                 else None for s, r in b.items()})
            entry["worker_memory_overhead_pct"] = overhead_pct(worker, {s: r.worker_peak_rss_mb for s, r in b.items()})
        if m in proxies:
            entry["proxy_wall_s"] = proxies[m]["wall_s"]
        table[m] = entry
        for s, r in by_seed.items():
            per_run[f"{m}-seed{s}"] = {
                "method": m, "seed": s, "run_dir": r.run_dir,
                "final_val_ppl": {k: (r.ppl[k][-1] if r.ppl[k] else None) for k in ["average", *domains]},
                "best_average_val_ppl": (best_point(r.eval_steps, r.ppl["average"]) or (None, None))[1],
                "eval_steps": r.eval_steps, "average_val_ppl": r.ppl["average"],
                "step_ms_median": step_ms[s], "mixer_ms_median": mixer_ms[s], "worker_peak_rss_mb": r.worker_peak_rss_mb,
                "server_peak_rss_mb": r.server_peak_rss_mb, "run_seconds": r.seconds, "wall_s": wall[s],
                "steps_to_reference": (to_ref.get(m) or {}).get(s),
                "final_weights": {d: float(w) for d, w in zip(domains, r.weights[-1])} if len(r.weights) else None,
                "agent": r.summary.get("agent"),
            }
    summary["headline"] = table
    summary["runs"] = per_run
    return summary


# ---------------------------------------------------------------------- outputs: table and plots


def _fmt(stat: dict[str, Any] | None, digits: int = 1, pct: bool = False) -> str:
    if not stat:
        return "n/a"
    sign = "+" if pct and stat["mean"] >= 0 else ""
    unit = "%" if pct else ""
    if stat["n"] == 1:
        return f"{sign}{stat['mean']:.{digits}f}{unit}"
    return f"{sign}{stat['mean']:.{digits}f}{unit} ± {stat['std']:.{digits}f}"


def _pct(stat: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if not stat else {**stat, **{k: 100.0 * stat[k] for k in ("mean", "std", "min", "max")}}


def _fmt_steps(h: dict[str, Any] | None) -> tuple[str, str]:
    if not h:
        return "n/a", "n/a"
    if not h["reached"]:
        return f"not reached (0/{h['seeds']})", "–"
    reached = "" if h["reached"] == h["seeds"] else f" (reached {h['reached']}/{h['seeds']})"
    return _fmt(h["steps"], 0) + reached, _fmt(h["ratio"], 2)


def _proxy_training(p: dict[str, Any]) -> str:
    """How a proxy stage learned its policy (summary["proxies"][method]), in words."""
    if p.get("trainer", "rl") != "rl":
        return f"one {p.get('mixer')} mixer run, weights replayed by progress"
    algo = p.get("algo") or "acodm"
    text = f"{p['rl_iterations']} RLlib iterations × {p['env_steps_per_iteration']} env steps of {algo}"
    agent = p.get("agent")
    if agent and algo == "acodm":
        text += (f" (actor {agent['actor_layers']}×{agent['actor_hidden']}, critic {agent['critic_layers']}×"
                 f"{agent['critic_hidden']}, γ {agent['gamma']:g}, warm-up {agent['warmup_fraction']:g}, "
                 f"reward {p.get('reward')})")
    return text


def render_table(summary: dict[str, Any]) -> str:
    """table.md: headline table, final per-domain perplexity, final weights."""
    methods, domains = summary["methods"], summary["domains"]
    head = summary["headline"]
    static = summary.get("static_baseline") or "static"
    n = len(summary["seeds"])
    spread = "mean ± sample std over seeds" if n > 1 else "one seed"
    gain = summary.get("uniform_last_quarter_gain")
    lines = [
        f"Target: {summary['target']['model']['num_layers']} layers × {summary['target']['model']['hidden_size']} hidden, "
        f"{summary['target']['steps']} steps × {summary['target']['tokens_per_step']:,} tokens, "
        f"evaluated every {summary['target']['eval_every']} steps; seeds {summary['seeds']} ({spread})."
        + (f" Convergence: uniform's average validation perplexity improved by {_fmt(_pct(gain), 1)}% over the "
           f"last quarter of training." if gain else ""),
    ]
    for method, p in (summary.get("proxies") or ({"acodm": summary["proxy"]} if "proxy" in summary else {})).items():
        lines.append(
            f"Proxy of {method}: {p['model']['num_layers']} layers × {p['model']['hidden_size']} hidden, "
            f"{p['steps']}-step episodes, {_proxy_training(p)}"
            f" ({'one policy per seed' if p['per_seed'] else 'one policy for all seeds'})."
        )
    lines += ["", f"| method | steps to ODM's best avg val ppl | ratio to ODM | final avg val ppl | best avg val ppl "
                  f"| step time (ms) | step time vs {static} | mixer ms/step (paired) | peak RSS worker+server (MiB) | memory vs {static} "
                  f"| wall-clock per run (s) | largest final weight (per seed) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        h = head.get(m, {})
        if not h.get("runs"):
            lines.append(f"| {m} | failed | | | | | | | | | | |")
            continue
        steps, ratio = _fmt_steps(h.get("steps_to_reference"))
        wall = _fmt(h["wall_s"], 0)
        if h.get("proxy_wall_s"):
            wall += f" (+ proxy {_fmt(h['proxy_wall_s'], 0)})"
        per_seed = h.get("max_final_weight_per_seed") or {"-": h["max_final_weight"]}
        spread_w = max(h["final_weights"].values()) - min(h["final_weights"].values())
        largest = "all equal" if spread_w < 1e-6 else ", ".join(f"{w['domain']} {w['weight']:.2f}" for w in per_seed.values())
        lines.append(
            f"| {m} | {steps} | {ratio} | {_fmt(h['final_val_ppl']['average'])} | {_fmt(h['best_average_val_ppl'])} "
            f"| {_fmt(h['step_ms'], 0)} | {_fmt(h.get('step_time_overhead_pct'), 1, True) if m != static else '(baseline)'} "
            f"| {_fmt(h.get('mixer_ms'), 1)} "
            f"| {_fmt(h['peak_rss_mb'], 0)} | {_fmt(h.get('memory_overhead_pct'), 1, True) if m != static else '(baseline)'} "
            f"| {wall} | {largest} |"
        )
    lines += ["", "Steps to reach uniform's final average validation perplexity (same seed; ratio to uniform's steps):", "",
              "| method | steps | ratio |", "|---|---|---|"]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs") and h.get("steps_to_uniform_final"):
            steps_u, ratio_u = _fmt_steps(h["steps_to_uniform_final"])
            lines.append(f"| {m} | {steps_u} | {ratio_u} |")
    if summary.get("decoys"):
        points = [f"{float(p):.0%}" for p in next(iter(v["decoy_weight"]["at"] for v in head.values() if v.get("runs")))]
        lines += ["", f"Weight on the decoy domains ({' + '.join(summary['decoys'])}) at these points of training, "
                      f"and over the whole run ({spread}; uniform puts {len(summary['decoys']) / len(domains):.3f} there):", "",
                  "| method | " + " | ".join(points) + " | whole run |", "|---|" + "---|" * (len(points) + 1)]
        for m in methods:
            h = head.get(m, {})
            if h.get("runs") and h.get("decoy_weight"):
                dw = h["decoy_weight"]
                lines.append(f"| {m} | " + " | ".join(_fmt(v, 3) for v in dw["at"].values()) + f" | {_fmt(dw['mean'], 3)} |")
    lines += ["", "Final validation perplexity per domain (" + spread + "):", "",
              "| method | " + " | ".join(domains) + " | average |", "|---|" + "---|" * (len(domains) + 1)]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs"):
            lines.append(f"| {m} | " + " | ".join(_fmt(h["final_val_ppl"][d]) for d in domains)
                         + f" | {_fmt(h['final_val_ppl']['average'])} |")
    lines += ["", "Domain weights at the last step (mean over seeds):", "",
              "| method | " + " | ".join(domains) + " |", "|---|" + "---|" * len(domains)]
    for m in methods:
        h = head.get(m, {})
        if h.get("runs"):
            lines.append(f"| {m} | " + " | ".join(f"{h['final_weights'][d]:.3f}" for d in domains) + " |")
    if summary.get("failures"):
        lines += ["", "Failed runs: " + "; ".join(f"{k}: {v}" for k, v in summary["failures"].items())]
    return "\n".join(lines) + "\n"


def _curve(by_seed: dict[int, RunData], key: str) -> tuple[list[int], np.ndarray, np.ndarray | None]:
    """Mean and spread over seeds at the eval steps every seed has."""
    common = sorted(set.intersection(*(set(r.eval_steps) for r in by_seed.values())))
    rows = np.array([[r.ppl[key][r.eval_steps.index(s)] for s in common] for r in by_seed.values()], dtype=float)
    spread = rows.std(axis=0, ddof=1) if len(rows) > 1 else None
    return common, rows.mean(axis=0), spread


def write_outputs(summary: dict[str, Any], runs: dict[str, RunData], specs: list[RunSpec], out_dir: Path) -> dict[str, str]:
    """table.md, val_ppl.png (average), val_ppl_domains.png (per domain), weights.png (per method)."""
    from acodm_ray.plots import plot_curve_panels, plot_curves, plot_weight_trajectories

    files = {"table": str(out_dir / "table.md")}
    (out_dir / "table.md").write_text(render_table(summary))
    by_method = _by_method(specs, runs)
    methods = [m for m in summary["methods"] if m in by_method]
    if not methods:
        return files
    domains = summary["domains"]
    band = " (band: ± std over seeds)" if len(summary["seeds"]) > 1 else ""
    curves = {m: _curve(by_method[m], "average") for m in methods}
    files["val_ppl"] = str(plot_curves(curves, out_dir / "val_ppl.png", ylabel="average validation perplexity",
                                       title="average validation perplexity" + band))
    panels = {k: {m: _curve(by_method[m], k) for m in methods} for k in ["average", *domains]}
    files["val_ppl_domains"] = str(plot_curve_panels(panels, out_dir / "val_ppl_domains.png",
                                                     title="validation perplexity per domain" + band))
    # the weights each run trained with (a mean over seeds would show a mix no run used)
    first = min(summary["seeds"])
    traj = {m: by_method[m][first].weights for m in methods if first in by_method[m] and len(by_method[m][first].weights)}
    if traj:
        files["weights"] = str(plot_weight_trajectories(traj, domains, out_dir / "weights.png",
                                                        title=f"domain weights per step (seed {first})",
                                                        ncols=3 if len(traj) > 3 else None, dpi=80))
    if len(summary["seeds"]) > 1:
        grid = {f"{m}, seed {s}": by_method[m][s].weights for m in methods for s in summary["seeds"]
                if s in by_method[m] and len(by_method[m][s].weights)}
        files["weights_seeds"] = str(plot_weight_trajectories(grid, domains, out_dir / "weights_seeds.png",
                                                              title="domain weights per step, every run",
                                                              ncols=len(summary["seeds"]), dpi=60))
    return files


def headline_lines(summary: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    out = []
    for m in summary["methods"]:
        h = summary["headline"].get(m, {})
        if not h.get("runs"):
            out.append(f"{m}: failed")
            continue
        steps, ratio = _fmt_steps(h.get("steps_to_reference"))
        out.append(f"{m}: final avg val ppl {_fmt(h['final_val_ppl']['average'])}, steps to ODM's best {steps} "
                   f"(ratio {ratio}), step {_fmt(h['step_ms'], 0)} ms")
    return out


__all__ = ["Method", "METHODS", "DEFAULT_METHODS", "split_method", "method_of", "proxy_methods", "proxy_key", "REFERENCE", "DEFAULT_QUICK", "CompareError", "parse_methods", "load_compare_config",
           "validate_compare", "target_config", "proxy_config", "plan", "run_comparison", "load_run",
           "steps_to_reach", "best_point", "steps_to_reference", "headline_steps", "mean_spread", "overhead_pct",
           "summarize", "render_table", "write_outputs", "headline_lines"]
