"""The configs of a comparison's runs, derived from one experiment config: the target run of each
(method, seed) and the proxy stage of each proxy method. `compare.target` overrides the config for
the target runs and `compare.proxy` further for the proxy stage; `signals.state_layers` is the same on
both so the proxy's policy fits the target's state. `compare.quick` (under `--quick`) shrinks all."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from acodm_ray.compare.methods import (
    METHODS,
    CompareError,
    method_of,
    parse_methods,
    proxy_methods,
    split_method,
)
from acodm_ray.config import (
    ConfigError,
    ExperimentConfig,
    deep_merge,
    from_dict,
    parse_overrides,
    read_yaml,
    to_dict,
    validate,
)
from acodm_ray.state_layers import state_layer_indices

# --quick when the config has no `compare.quick` of its own: tiny model, few steps, one seed.
DEFAULT_QUICK: dict[str, Any] = {
    "model": {"hidden_size": 32, "num_layers": 2, "num_heads": 2},
    "train": {
        "seq_len": 32,
        "micro_batch_size": 4,
        "grad_accum": 8,
        "eval_batches": 1,
    },  # 8 >= the bundled 7 domains
    "agent": {
        "actor_hidden": 32,
        "actor_layers": 2,
        "critic_hidden": 32,
        "critic_layers": 2,
        "batch_size": 4,
        "warmup_fraction": 0.25,
    },
    "compare": {
        "seeds": 1,
        "target": {
            "train": {"steps": 8, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 8}
        },
        "proxy": {
            "model": {"hidden_size": 16},
            "train": {"steps": 8},
            "rl": {"iterations": 1, "min_sample_timesteps_per_iteration": 8, "checkpoint_every": 1},
        },
    },
}


def load_compare_config(
    path: str | Path | None, overrides: list[str] | None = None, quick: bool = False
) -> ExperimentConfig:
    """The config file, then (under `quick`) its `compare.quick` section or `DEFAULT_QUICK`, then the
    `--set` overrides (which win over quick)."""
    data = read_yaml(path) if path is not None else {}
    cli = parse_overrides(overrides)
    if quick:
        probe = from_dict(ExperimentConfig, deep_merge(data, cli))
        data = deep_merge(data, probe.compare.quick or DEFAULT_QUICK)
    cfg = from_dict(ExperimentConfig, deep_merge(data, cli))
    validate(cfg, resolve=False)  # "auto" stays: each run resolves it under its method's overrides
    validate_compare(cfg)
    return cfg


def validate_compare(cfg: ExperimentConfig) -> None:
    c = cfg.compare
    try:
        c.methods = parse_methods(c.methods, c.proxy_sizes)
    except CompareError as err:
        raise ConfigError(f"compare.methods: {err}") from err
    if "file" in c.methods and not cfg.mixer.weights_file:
        raise ConfigError(
            "compare.methods has 'file' but mixer.weights_file is not set: name the YAML/JSON "
            "file of {domain: weight} to compare (--set mixer.weights_file=PATH)"
        )
    if c.seeds < 1:
        raise ConfigError(f"compare.seeds must be >= 1, got {c.seeds}")
    if c.concurrency < 1:
        raise ConfigError(f"compare.concurrency must be >= 1, got {c.concurrency}")
    if c.proxy_cpus <= 0 or c.proxy_gpus < 0:
        raise ConfigError(
            f"compare.proxy_cpus must be positive and compare.proxy_gpus >= 0, got {c.proxy_cpus}, {c.proxy_gpus}"
        )
    if c.state_layers is not None and c.state_layers < 1:
        raise ConfigError(f"compare.state_layers must be >= 1, got {c.state_layers}")
    for key in ("target", "proxy"):
        if "compare" in getattr(c, key):
            raise ConfigError(f"compare.{key} cannot hold a compare section")
    for size, over in c.proxy_sizes.items():
        if not isinstance(over, dict) or "compare" in over:
            raise ConfigError(
                f"compare.proxy_sizes.{size} must be a config override without a compare section"
            )
    tgt = target_config(
        cfg, c.methods[0], c.first_seed
    )  # refuses bad override keys now, not mid-run
    if tgt.model.num_layers < state_layers(cfg):
        raise ConfigError(
            f"compare.state_layers = {state_layers(cfg)} but the target has only "
            f"{tgt.model.num_layers} layer(s)"
        )
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
    if cfg.compare.state_layers is not None:
        return cfg.compare.state_layers
    tgt = deep_merge(to_dict(cfg), cfg.compare.target)
    if (tgt.get("signals") or {}).get("state_layers") is not None:
        return int(tgt["signals"]["state_layers"])
    return len(state_layer_indices(int(tgt["model"]["num_layers"])))


def _common(data: dict[str, Any], cfg: ExperimentConfig, seed: int) -> dict[str, Any]:
    data = deep_merge(
        data, {"train": {"seed": int(seed)}, "signals": {"state_layers": state_layers(cfg)}}
    )
    data["compare"] = to_dict(dataclasses.replace(cfg.compare, quick={}))
    return data


def target_config(
    cfg: ExperimentConfig,
    method: str,
    seed: int,
    policy: str | None = None,
    server_name: str | None = None,
) -> ExperimentConfig:
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
            raise CompareError(
                f"no proxy size {size!r} in compare.proxy_sizes (sizes: {sorted(cfg.compare.proxy_sizes)})"
            )
        data = deep_merge(data, cfg.compare.proxy_sizes[size])
    data = deep_merge(_common(data, cfg, seed), {"rl": {"algo": "acodm"}})
    data = deep_merge(deep_merge(data, spec.shared), spec.overrides)
    if spec.width_scale is not None:
        agent = data.setdefault("agent", {})
        for key in ("actor_hidden", "critic_hidden"):
            agent[key] = max(
                4, int(round(int(agent.get(key, getattr(cfg.agent, key))) * spec.width_scale))
            )
    return _build(data, f"compare.proxy ({method}, seed {seed})")


def override_layers(cfg: ExperimentConfig, method: str, stage: str) -> list[tuple[str, dict]]:
    """The overrides `target_config` / `proxy_config` put on the config for `method`'s `stage`
    run, in merge order, each under the key a user sets it with ("method": the method's own, which
    nothing overrides). For naming the key that changes a run (`runplan.PlannedRun.set_by`)."""
    base, size = split_method(method)
    spec = METHODS[base]
    layers: list[tuple[str, dict]] = [("compare.target", cfg.compare.target)]
    if stage == "proxy":
        layers.append(("compare.proxy", cfg.compare.proxy))
        if size is not None:
            layers.append((f"compare.proxy_sizes.{size}", cfg.compare.proxy_sizes.get(size, {})))
    own = spec.overrides if (stage == "proxy") == (spec.kind == "proxy") else {}
    return [*layers, ("method", deep_merge(spec.shared, own))]


def proxy_key(method: str, seed: int) -> str:
    """The proxy stage's key and run-dir name ("proxy-seed0" for plain acodm, as before)."""
    return f"proxy-seed{seed}" if method == "acodm" else f"proxy-{method}-seed{seed}"


def seeds_of(cfg: ExperimentConfig) -> list[int]:
    return [cfg.compare.first_seed + i for i in range(cfg.compare.seeds)]


def shared_mlflow_store(cfg: ExperimentConfig, out_dir: Path) -> ExperimentConfig:
    """With tracking.mlflow and no tracking URI, every run of the comparison logs into one local
    store, <out_dir>/mlruns (one MLflow run per run dir), so one `mlflow ui` shows them all."""
    tc = cfg.tracking
    if not tc.mlflow or tc.mlflow_tracking_uri:
        return cfg
    return dataclasses.replace(
        cfg, tracking=dataclasses.replace(tc, mlflow_tracking_uri=(out_dir / "mlruns").as_uri())
    )
