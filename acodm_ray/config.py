"""Typed experiment configuration, loaded from YAML and overridable from the command line.

One dataclass per component (torchtitan style). `load_config` rejects unknown keys and values of
the wrong type with an error that names the offending key, so a typo never silently falls back to
a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acodm_ray.agent.config import AgentConfig, check_agent
from acodm_ray.errors import ConfigError
from acodm_ray.tracking import TrackingConfig
from acodm_ray.typed_config import deep_merge, from_dict, parse_overrides, read_yaml, to_dict

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "load_config",
    "validate",
    "cache_dir",
    "from_dict",
    "to_dict",
    "deep_merge",
    "parse_overrides",
    "read_yaml",
]


@dataclass
class CorpusConfig:
    """Where the multi-domain text comes from.

    source:
      - "bundled": the offline corpus built by `acodm corpus build` (real text from Debian packages);
      - "tiny": the small slice shipped inside the package (tests, smoke runs);
      - "json" | "parquet" | "text" | "csv": local files (jsonl, parquet, csv, or one text file
        per document), read with Ray Data;
      - "hub": a `datasets` dataset (`path`: a hub name, or a builder such as "json" with local
        `data_files`), streamed: the only source that downloads, and only what it reads.
    Domains come either from a column (`domain_column`, dotted for nested fields such as The Pile's
    `meta.pile_set_name`) or from one source per domain (`domain_files`). Every source is prepared
    into token shards (`acodm corpus prepare`) and trained on from those.
    """

    source: str = "bundled"
    path: str | None = None  # corpus dir for "bundled", hub name for "hub"
    data_files: dict[str, list[str]] = field(default_factory=dict)  # split -> files (column mode)
    domain_files: dict[str, list[str]] = field(default_factory=dict)  # domain -> files (file mode)
    domain_column: str = "domain"
    text_column: str = "text"
    domains: list[str] = field(default_factory=list)  # restrict to / order by these; empty = all
    validation_fraction: float = 0.05  # used only when the source has no validation split
    max_docs_per_domain: int | None = None
    # a domain's split stops taking documents once it holds this many tokens (whole documents);
    # with `domains` named, a streamed hub source stops reading when every domain is full
    max_tokens_per_domain: int | None = None
    trust_remote_code: bool = False
    # the prepared corpus (token shards): a local path or a pyarrow.fs URI (s3://, gs://, ...);
    # None = $ACODM_HOME/prepared/<source>-<key>, prepared automatically on first use
    prepared: str | None = None


@dataclass
class PrepareConfig:
    """How `acodm corpus prepare` (acodm_ray/data/prepare.py) runs: the tokenizer actor pool of its
    Ray Data job, and the shard size. None of it changes the tokens."""

    workers: int | None = None  # most tokenizer actors; None = one per CPU of the Ray cluster
    cpus_per_worker: float = 0.5  # fractional: a read task and the actors share a 2-core machine
    shard_tokens: int = 1 << 25  # tokens per shard file (64 MiB of uint16)


@dataclass
class TokenizerConfig:
    """Train a byte-level BPE on the corpus (cached), or load an existing tokenizer."""

    path: str | None = None  # tokenizer.json file or HF tokenizer directory; None = train one
    from_hub: bool = False  # allow `path` to be a hub name (downloads); off: local files only
    trust_remote_code: bool = False
    vocab_size: int = 4096
    train_max_chars_per_domain: int = 2_000_000


@dataclass
class ModelConfig:
    """A Hugging Face causal LM trained from scratch. Defaults are a tiny GPT-NeoX (Pythia shape)."""

    model_type: str = "gpt_neox"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int | None = None  # None = 4 * hidden_size
    max_position_embeddings: int = 2048
    hf_overrides: dict[str, Any] = field(default_factory=dict)  # any extra HF config field
    trust_remote_code: bool = False


@dataclass
class TrainConfig:
    """Optimisation of the LM (proxy or target)."""

    steps: int = 100
    seq_len: int = 64
    micro_batch_size: int = 8
    grad_accum: int = 8  # micro-batches per optimizer step; each micro-batch is one domain
    coverage: str = (
        "iid"  # iid | forced | weighted: how micro-batches go to domains (acodm_ray/sampler.py)
    )
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 25
    eval_batches: int = 4  # validation micro-batches per domain
    eval_domains: list[str] = field(
        default_factory=list
    )  # domains the average perplexity covers; empty = all
    checkpoint_every: int = 50
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    dtype: str = "float32"  # "float32" | "bfloat16" (autocast)


@dataclass
class SignalConfig:
    """The per-domain signals of docs/method.md: state features and gradient-alignment scores."""

    param_suffix: str | None = (
        None  # weight name suffix of the tracked matrices; None = by model type
    )
    alignment_layers: int = 3  # top-half layers whose gradients give the alignment scores
    state_layers: int | None = None  # tracked matrices in the state; None = every other layer.
    # Fix it to the same number for a proxy and a target of different depth (policy transfer).
    progress_scale: float = (
        1.0  # state[-1] = progress x scale; the reference's 100 drowns the other features
    )
    # total: <g_i, sum_j g_j> / running scale (ours) | cross: <g_i, sum_{j!=i} g_j> / running scale (no
    # self term: unbiased under micro-batch noise) | eval: <g_i, g_ref> / running scale, g_ref the gradient
    # of one more micro-batch drawn from the evaluation domains (signals.eval_alignment) | paper:
    # sum_{j!=i} <g_i, g_j>, z-scored | auto: eval if train.eval_domains names any, else total
    score: str = "auto"
    # "eval" only: loss = g_ref is the gradient of the evaluated domains' mean loss; perplexity = each
    # reference row's loss weighted by its domain's exp(last training loss) / their mean, so g_ref
    # follows the gradient of the mean of the per-domain perplexities (the benchmark's metric)
    eval_weighting: str = "loss"
    score_scale_beta: float = 0.95  # running scale of the "total", "cross" and "eval" scores
    # reward = each domain's mean score over the last W steps; None: 8 with the eval score, else 1
    score_window: int | None = None
    score_clip_total: float = 10.0  # clip of the running-scaled "total", "cross" and "eval" scores
    score_clip: float = (
        999.0  # clip of the norm-scaled alignment scores before z-normalisation ("paper")
    )
    z_clip: float = 3.0


@dataclass
class MixerConfig:
    """Which mixer chooses the domain weights, and its knobs."""

    name: str = "odm"  # uniform | natural | file | odm | alignment
    weights_file: str | None = None  # for "file": YAML/JSON mapping domain -> weight
    odm_variant: str = "smoothed_mean"  # smoothed_mean | exp3
    odm_alpha: float = 0.5
    # alignment (acodm_ray/mixers/alignment.py, DoGE's rule): step size lr_t / mu, clipped scores,
    # mixed with a uniform floor
    alignment_mu: float = 1e-3
    alignment_clip_min: float = -5.0
    alignment_clip_max: float = 5.0
    alignment_floor: float = 0.05


ENV_REWARDS = ("alignment", "loss")


@dataclass
class EnvConfig:
    """The Gymnasium environment around proxy pretraining (envs/)."""

    steps_per_action: int = 1  # optimizer steps trained with one action (decide_every)
    action_epsilon: float = 1e-6  # weights = (a + eps) / sum(a + eps) for Box(0, 1) actions
    reward: str = (
        "alignment"  # alignment (docs/method.md) | loss (ablation: per-domain loss decrease)
    )


@dataclass
class RLConfig:
    """The RLlib run of jobs/proxy_rl.py. Every resource request is a config value, so a cluster
    with an autoscaler scales by configuration alone."""

    algo: str = "acodm"  # acodm | ppo | sac | appo
    iterations: int = 10
    num_env_runners: int = 0  # 0 = sample in the driver process; >1 = parallel proxies
    num_envs_per_env_runner: int = 1
    num_cpus_per_env_runner: float = 1.0
    num_gpus_per_env_runner: float = 0.0
    num_learners: int = 0
    num_gpus_per_learner: float = 0.0
    checkpoint_every: int = 5
    min_time_s_per_iteration: float = 0.0
    min_sample_timesteps_per_iteration: int = 100  # env steps (proxy optimizer steps) per iteration
    rollout_fragment_length: int | str = "auto"
    train_batch_size: int = 32  # for on-policy algorithms (PPO, APPO)


@dataclass
class TargetConfig:
    """Target pretraining on Ray Train (jobs/target_pretrain.py, acodm_ray/target/). Every resource
    request is a config value, so a cluster with an autoscaler scales by configuration alone."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None = 1 per worker when use_gpu
    resources_per_worker: dict[str, float] = field(default_factory=dict)  # extra (custom) resources
    backend: str = (
        "auto"  # torch.distributed backend: auto (nccl on GPU, gloo on CPU) | gloo | nccl
    )
    decide_every: int = 1  # optimizer steps per mixer decision
    max_failures: int = 3  # worker-group restarts from the last checkpoint before the run fails
    storage_path: str | None = None  # Ray Train storage (checkpoints); None = <run dir>/ray_train
    keep_checkpoints: int = 2
    policy: str | None = None  # exported AC-ODM policy dir (proxy mode); None = use `mixer`
    online_acodm: bool = False  # non-proxy mode: the AC-ODM agent learns online on the target
    compute_scores: bool = False  # alignment scores also for mixers that do not learn from them
    server_name: str = "acodm-policy-server"
    server_namespace: str = "acodm"
    server_detached: bool = False
    server_timeout_s: float = 30.0
    check_weights_sync: bool = True  # assert identical weights on every worker at every step
    rank_logs: bool = True  # per-rank weights log (ranks/rank<r>.jsonl) in the run dir


@dataclass
class CompareConfig:
    """The method comparison of jobs/compare.py (acodm_ray/compare/). `target` and `proxy` are
    overrides shaped like this config (e.g. {train: {steps: 120}, model: {hidden_size: 64}}): the
    target runs use the config + `target`; the AC-ODM proxy stage uses that + `proxy`. `quick`
    (applied under --quick, before --set) may hold any section, `compare` included."""

    methods: list[str] = field(
        default_factory=lambda: ["uniform", "natural", "odm", "acodm", "acodm-online"]
    )
    # named proxy sizes for the proxy-size sweep: method "acodm@small" learns on config + target +
    # proxy + proxy_sizes["small"] (overrides shaped like this config, e.g. {model: {hidden_size: 32}})
    proxy_sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 3  # runs per method, with train.seed = first_seed, first_seed + 1, ...
    first_seed: int = 0
    state_layers: int | None = (
        None  # tracked matrices in proxy AND target state; None = the target's default
    )
    target: dict[str, Any] = field(default_factory=dict)
    proxy: dict[str, Any] = field(default_factory=dict)
    proxy_per_seed: bool = (
        True  # one proxy policy per seed (False: the first seed's policy for all)
    )
    proxy_cpus: float = 1.0  # CPUs of the Ray task that runs a proxy stage
    proxy_gpus: float = (
        0.0  # GPUs of that task (the proxy env trains there when rl.num_env_runners is 0)
    )
    concurrency: int = 1  # runs (proxy stages and target runs) at the same time
    quick: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExperimentConfig:
    name: str = "acodm"
    output_dir: str = "runs"
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    signals: SignalConfig = field(default_factory=SignalConfig)
    mixer: MixerConfig = field(default_factory=MixerConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, for jobs' own sections


def cache_dir() -> Path:
    """Where built corpora, tokenizers and token caches live (override with ACODM_HOME)."""
    return Path(os.environ.get("ACODM_HOME", Path.home() / ".cache" / "acodm")).expanduser()


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
    """Range checks that types alone cannot express; `resolve`: "auto" values resolved too."""
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
    if t.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"train.dtype must be float32 or bfloat16, got {t.dtype!r}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, got {t.device!r}")
    if cfg.model.hidden_size % cfg.model.num_heads:
        raise ConfigError(
            f"model.hidden_size ({cfg.model.hidden_size}) must be divisible by model.num_heads "
            f"({cfg.model.num_heads})"
        )
    if not 0.0 <= cfg.corpus.validation_fraction < 1.0:
        raise ConfigError(
            f"corpus.validation_fraction must be in [0, 1), got {cfg.corpus.validation_fraction}"
        )
    if cfg.mixer.odm_variant not in ("smoothed_mean", "exp3"):
        raise ConfigError(
            f"mixer.odm_variant must be smoothed_mean or exp3, got {cfg.mixer.odm_variant!r}"
        )
    from acodm_ray.sampler import COVERAGES
    from acodm_ray.signals import EVAL_WEIGHTINGS, resolve_named_targets

    if t.coverage not in COVERAGES:
        raise ConfigError(f"train.coverage must be one of {list(COVERAGES)}, got {t.coverage!r}")
    if cfg.signals.eval_weighting not in EVAL_WEIGHTINGS:
        raise ConfigError(
            f"signals.eval_weighting must be one of {list(EVAL_WEIGHTINGS)}, got {cfg.signals.eval_weighting!r}"
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
    if cfg.env.reward not in ENV_REWARDS:
        raise ConfigError(f"env.reward must be one of {list(ENV_REWARDS)}, got {cfg.env.reward!r}")
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
    if tc.backend not in ("auto", "gloo", "nccl"):
        raise ConfigError(f"target.backend must be auto, gloo or nccl, got {tc.backend!r}")
    if tc.server_timeout_s <= 0:
        raise ConfigError(f"target.server_timeout_s must be positive, got {tc.server_timeout_s}")
    if tc.policy and tc.online_acodm:
        raise ConfigError(
            "target.policy (proxy mode) and target.online_acodm (non-proxy mode) exclude each other"
        )
