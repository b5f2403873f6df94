"""The config sections of the Ray jobs: `rl` (the proxy stage, jobs/proxy_rl.py), `target` (target
pretraining on Ray Train) and `compare` (the method comparison); acodm_ray/config.py puts them
together. Every resource request is a config value, so a cluster with an autoscaler scales by
configuration alone. Each field's docstring is its documentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Algo = Literal["acodm", "ppo", "sac", "appo"]
Backend = Literal["auto", "gloo", "nccl"]


@dataclass
class RLConfig:
    """The RLlib run of jobs/proxy_rl.py (the proxy stage)."""

    algo: Algo = "acodm"
    """The RLlib algorithm that learns the policy: AC-ODM, or PPO, SAC, APPO on the same env."""
    iterations: int = 10
    """RLlib training iterations."""
    num_env_runners: int = 0
    """Env runners: 0 samples in the driver process; more than 1 runs parallel proxies."""
    num_envs_per_env_runner: int = 1
    """Environments (proxy LMs) per env runner."""
    num_cpus_per_env_runner: float = 1.0
    """CPUs of each env runner."""
    num_gpus_per_env_runner: float = 0.0
    """GPUs of each env runner (the proxy LM trains there)."""
    num_learners: int = 0
    """Remote learners; 0: the learner runs in the driver."""
    num_gpus_per_learner: float = 0.0
    """GPUs of each learner."""
    checkpoint_every: int = 5
    """Iterations between RLlib checkpoints."""
    min_time_s_per_iteration: float = 0.0
    """Seconds an iteration lasts at least."""
    min_sample_timesteps_per_iteration: int = 100
    """Env steps (proxy optimizer steps) an iteration samples at least."""
    rollout_fragment_length: int | Literal["auto"] = "auto"
    """Env steps an env runner samples per call; "auto": RLlib's choice."""
    train_batch_size: int = 32
    """Batch size of the on-policy algorithms (PPO, APPO)."""


@dataclass
class TargetConfig:
    """Target pretraining on Ray Train (jobs/target_pretrain.py, acodm_ray/target/)."""

    num_workers: int = 1
    """Ray Train workers (data-parallel ranks)."""
    use_gpu: bool = False
    """Train on GPUs."""
    cpus_per_worker: float = 1.0
    """CPUs of each worker."""
    gpus_per_worker: float | None = None
    """GPUs of each worker; null: 1 per worker when use_gpu."""
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    """Extra (custom) resources of each worker."""
    backend: Backend = "auto"
    """The torch.distributed backend: "auto" is nccl on GPU and gloo on CPU."""
    decide_every: int = 1
    """Optimizer steps per mixer decision."""
    max_failures: int = 3
    """Worker-group restarts from the last checkpoint before the run fails (-1: forever)."""
    storage_path: str | None = None
    """Ray Train storage for checkpoints (shared storage on a multi-node cluster); null: <run
    dir>/ray_train."""
    keep_checkpoints: int = 2
    """Checkpoints Ray Train keeps."""
    policy: str | None = None
    """An exported AC-ODM policy directory (proxy mode); null: the `mixer` section decides."""
    online_acodm: bool = False
    """Non-proxy mode: the AC-ODM agent learns online on the target."""
    compute_scores: bool = False
    """Compute the alignment scores also for mixers that do not learn from them."""
    server_name: str = "acodm-policy-server"
    """Name of the PolicyServer actor that serves the weights."""
    server_namespace: str = "acodm"
    """Ray namespace of the PolicyServer actor."""
    server_detached: bool = False
    """Start the PolicyServer actor detached: it outlives the job that started it."""
    server_timeout_s: float = 30.0
    """Seconds rank 0 waits for a server call; past it training goes on with the last weights."""
    check_weights_sync: bool = True
    """Assert identical weights on every worker at every step."""
    rank_logs: bool = True
    """Write each rank's weights log (ranks/rank<r>.jsonl) in the run dir."""


@dataclass
class CompareConfig:
    """The method comparison of jobs/compare.py (acodm_ray/compare/). `target` and `proxy` are
    overrides shaped like this config (e.g. {train: {steps: 120}, model: {hidden_size: 64}}): the
    target runs use the config + `target`; the AC-ODM proxy stage uses that + `proxy`. `quick`
    (applied under --quick, before --set) may hold any section, `compare` included."""

    methods: list[str] = field(
        default_factory=lambda: ["uniform", "natural", "odm", "acodm", "acodm-online"]
    )
    """The methods compared (acodm_ray/compare/methods.py lists them; jobs/compare.py --help
    too); a proxy method also as <method>@<size> (proxy_sizes)."""
    proxy_sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named proxy sizes for the proxy-size sweep: method "acodm@small" learns on config + target +
    proxy + proxy_sizes["small"] (overrides shaped like this config, e.g. {model: {hidden_size:
    32}})."""
    seeds: int = 3
    """Runs per method; the i-th has train.seed = first_seed + i."""
    first_seed: int = 0
    """train.seed of each method's first run."""
    state_layers: int | None = None
    """Tracked matrices in the proxy's AND the target's state (one size, so the policy transfers);
    null: the target's default."""
    target: dict[str, Any] = field(default_factory=dict)
    """Overrides of the config for the target runs."""
    proxy: dict[str, Any] = field(default_factory=dict)
    """Overrides of the target runs' config for the proxy stages."""
    proxy_per_seed: bool = True
    """One proxy policy per seed; false: the first seed's policy serves every seed."""
    proxy_cpus: float = 1.0
    """CPUs of the Ray task that runs a proxy stage."""
    proxy_gpus: float = 0.0
    """GPUs of that task (the proxy env trains there when rl.num_env_runners is 0)."""
    concurrency: int = 1
    """Runs (proxy stages and target runs) at the same time."""
    quick: dict[str, Any] = field(default_factory=dict)
    """Overrides applied under --quick (smoke-test sizes); empty: a built-in tiny set."""
