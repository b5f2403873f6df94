"""Typed experiment configuration, loaded from YAML and overridable from the command line.

One dataclass per component (torchtitan style), in config_data.py (corpus, prepare, tokenizer,
model), config_train.py (train, signals, mixer, env), config_jobs.py (rl, target, compare),
agent/config.py (agent) and tracking.py (tracking); all are importable from here. A field is its
own documentation and its own list of allowed values (typed_config.py): docs/config.md is generated
from the fields (`acodm config docs`), `acodm config show` prints a resolved config. `load_config`
rejects unknown keys and values of the wrong type with an error that names the offending key, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from acodm_ray.agent.config import AgentConfig, check_agent
from acodm_ray.config_data import CorpusConfig, ModelConfig, PrepareConfig, TokenizerConfig
from acodm_ray.config_jobs import CompareConfig, RLConfig, TargetConfig
from acodm_ray.config_train import EnvConfig, MixerConfig, SignalConfig, TrainConfig
from acodm_ray.errors import ConfigError
from acodm_ray.tracking import TrackingConfig
from acodm_ray.typed_config import (
    check_choices,
    choices,
    deep_merge,
    field_help,
    field_of,
    from_dict,
    parse_overrides,
    read_yaml,
    to_dict,
)

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "CorpusConfig",
    "PrepareConfig",
    "TokenizerConfig",
    "ModelConfig",
    "TrainConfig",
    "SignalConfig",
    "MixerConfig",
    "EnvConfig",
    "AgentConfig",
    "RLConfig",
    "TargetConfig",
    "TrackingConfig",
    "CompareConfig",
    "load_config",
    "config_flag",
    "validate",
    "cache_dir",
    "from_dict",
    "to_dict",
    "deep_merge",
    "parse_overrides",
    "read_yaml",
]


@dataclass
class ExperimentConfig:
    """One experiment: a section per component, and the run's name."""

    RETIRED_KEYS: ClassVar[tuple[str, ...]] = ("extra",)  # in configs written before it went

    name: str = "acodm"
    """The experiment's name: run directories are named after it."""
    output_dir: str = "runs"
    """Parent of the run directories (relative paths: under $ACODM_OUTPUT_ROOT when set)."""
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    """Where the multi-domain text comes from."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    """The tokenizer: trained on the corpus, or loaded."""
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    """How the corpus is prepared into token shards."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The LM trained from scratch."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimisation of the LM."""
    signals: SignalConfig = field(default_factory=SignalConfig)
    """The per-domain state features and scores."""
    mixer: MixerConfig = field(default_factory=MixerConfig)
    """The mixer that chooses the domain weights."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """The Gymnasium environment around proxy pretraining."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """The AC-ODM agent (DDPG with a vector critic)."""
    rl: RLConfig = field(default_factory=RLConfig)
    """The RLlib run of the proxy stage."""
    target: TargetConfig = field(default_factory=TargetConfig)
    """Target pretraining on Ray Train."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Where results are logged."""
    compare: CompareConfig = field(default_factory=CompareConfig)
    """The method comparison."""


def cache_dir() -> Path:
    """Where built corpora, tokenizers and token caches live (override with ACODM_HOME)."""
    return Path(os.environ.get("ACODM_HOME", Path.home() / ".cache" / "acodm")).expanduser()


def config_flag(parser: Any, flag: str, key: str, **kwargs: Any) -> None:
    """A flag that sets the config field `key` (dotted): its --help is the field's docstring and
    the key, its choices the field's Literal values; not given (None), the config's value stays."""
    kwargs.setdefault("help", field_help(ExperimentConfig, key))
    if "action" not in kwargs:
        kwargs.setdefault("default", None)
        kwargs.setdefault("choices", choices(field_of(ExperimentConfig, key)[0]))
    parser.add_argument(flag, **kwargs)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    cls: type = ExperimentConfig,
) -> Any:
    """Load `cls` from a YAML file (or defaults), then apply `section.key=value` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = deep_merge(data, parse_overrides(overrides))
    cfg = from_dict(cls, data)
    validate(cfg)
    return cfg


def validate(cfg: ExperimentConfig, resolve: bool = True) -> None:
    """Range checks that types alone cannot express, and the allowed values of a config built in
    code (a loaded one had them checked as it was read); `resolve`: "auto" values resolved too
    (signals.resolve_named_targets)."""
    from acodm_ray.signals import resolve_named_targets  # lazy: signals imports this module

    check_choices(cfg, "config")
    t = cfg.train
    positive = {
        "train.steps": t.steps,
        "train.seq_len": t.seq_len,
        "train.micro_batch_size": t.micro_batch_size,
        "train.grad_accum": t.grad_accum,
        "train.eval_batches": t.eval_batches,
        "model.hidden_size": cfg.model.hidden_size,
        "model.num_layers": cfg.model.num_layers,
        "model.num_heads": cfg.model.num_heads,
        "tokenizer.vocab_size": cfg.tokenizer.vocab_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if t.lr <= 0 or t.min_lr < 0 or t.min_lr > t.lr:
        raise ConfigError(f"need 0 <= train.min_lr <= train.lr and lr > 0, got {t.min_lr}, {t.lr}")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ConfigError(
            f"model.hidden_size ({cfg.model.hidden_size}) must be divisible by model.num_heads "
            f"({cfg.model.num_heads})"
        )
    if not 0.0 <= cfg.corpus.validation_fraction < 1.0:
        raise ConfigError(
            f"corpus.validation_fraction must be in [0, 1), got {cfg.corpus.validation_fraction}"
        )
    if not 0.0 <= cfg.signals.score_scale_beta < 1.0:
        raise ConfigError(
            f"signals.score_scale_beta must be in [0, 1), got {cfg.signals.score_scale_beta}"
        )
    try:
        check_agent(cfg.agent)
        resolved = resolve_named_targets(cfg.signals, cfg.agent, t.eval_domains)
        cfg.signals, cfg.agent = resolved if resolve else (cfg.signals, cfg.agent)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    m = cfg.mixer
    if (
        m.alignment_mu <= 0
        or m.alignment_clip_min > m.alignment_clip_max
        or not 0.0 <= m.alignment_floor <= 1.0
    ):
        raise ConfigError(
            f"mixer: need alignment_mu > 0, alignment_clip_min <= alignment_clip_max and "
            f"alignment_floor in [0, 1], got {m.alignment_mu}, {m.alignment_clip_min}, "
            f"{m.alignment_clip_max}, {m.alignment_floor}"
        )
    if not 0.0 <= cfg.mixer.odm_alpha < 1.0:
        raise ConfigError(f"mixer.odm_alpha must be in [0, 1), got {cfg.mixer.odm_alpha}")
    validate_target(cfg.target)


def validate_target(tc: TargetConfig) -> None:
    for key in ("num_workers", "decide_every", "keep_checkpoints"):
        if getattr(tc, key) < 1:
            raise ConfigError(f"target.{key} must be >= 1, got {getattr(tc, key)}")
    if tc.cpus_per_worker < 0 or (tc.gpus_per_worker is not None and tc.gpus_per_worker < 0):
        raise ConfigError("target.cpus_per_worker and target.gpus_per_worker must be >= 0")
    if tc.max_failures < -1:
        raise ConfigError(
            f"target.max_failures must be >= -1 (-1 = retry forever), got {tc.max_failures}"
        )
    if tc.server_timeout_s <= 0:
        raise ConfigError(f"target.server_timeout_s must be positive, got {tc.server_timeout_s}")
    if tc.policy and tc.online_acodm:
        raise ConfigError(
            "target.policy (proxy mode) and target.online_acodm (non-proxy mode) exclude each other"
        )
