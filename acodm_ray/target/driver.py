"""`run_target`: the driver side of a target run (see the package docstring): load the corpus, check
and start the served mixer, run the `TorchTrainer` (`fit`), then write what the run produced
(`finish.finish_run`). The run's lifecycle is `acodm_ray.run.Run`'s; rank 0 joins it."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import ray
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import AutoModelForCausalLM

from acodm_ray.config import ExperimentConfig, TargetConfig, load_config, to_dict
from acodm_ray.data.load import load_tokenized, with_prepared
from acodm_ray.model import build_hf_config, state_params
from acodm_ray.policy_server import (
    MixerSpec,
    check_spec,
    mixer_spec,
    start_policy_server,
    stop_policy_server,
)
from acodm_ray.run import Run
from acodm_ray.rundir import RunDirExistsError
from acodm_ray.runplan import mixer_label
from acodm_ray.signals import make_state_spec
from acodm_ray.target.faults import read_faults
from acodm_ray.target.finish import TargetTrainingError, finish_run
from acodm_ray.target.worker import train_worker
from acodm_ray.tracking import require_backends

log = logging.getLogger("acodm_ray.target")

RAY_STORAGE_DIR = "ray_train"


class Storage(NamedTuple):
    """Where Ray Train keeps a run's checkpoints: `path`/`name` (RunConfig's storage_path, name)."""

    path: str
    name: str


def _abs_if_exists(value: str | None) -> str | None:
    if value and "://" not in value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def absolutize_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Ray Train workers run in another working directory: make local file paths absolute."""
    cfg = dataclasses.replace(cfg)
    cfg.corpus = dataclasses.replace(
        cfg.corpus,
        path=_abs_if_exists(cfg.corpus.path),
        data_files={k: [_abs_if_exists(f) for f in v] for k, v in cfg.corpus.data_files.items()},
        domain_files={
            k: [_abs_if_exists(f) for f in v] for k, v in cfg.corpus.domain_files.items()
        },
    )
    cfg.tokenizer = dataclasses.replace(cfg.tokenizer, path=_abs_if_exists(cfg.tokenizer.path))
    cfg.mixer = dataclasses.replace(cfg.mixer, weights_file=_abs_if_exists(cfg.mixer.weights_file))
    cfg.target = dataclasses.replace(cfg.target, policy=_abs_if_exists(cfg.target.policy))
    return cfg


def state_spec_for(
    cfg: ExperimentConfig, vocab_size: int, eos_id: int, domains: list[str]
) -> dict[str, Any]:
    """The run's state spec (as `LMTrainer.state_spec`), from a model built on the meta device."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            build_hf_config(cfg.model, vocab_size, eos_id),
            trust_remote_code=cfg.model.trust_remote_code,
        )
    names = [n for n, _ in state_params(model, cfg.signals.param_suffix, cfg.signals.state_layers)]
    return make_state_spec(list(domains), names, cfg.signals.progress_scale, cfg.signals.z_clip)


def mixer_spec_for(
    cfg: ExperimentConfig,
    domains: list[str],
    natural: np.ndarray,
    state_dim: int,
    state_spec: dict[str, Any] | None = None,
) -> MixerSpec:
    """Which mixer the run serves: target.policy > target.online_acodm > cfg.mixer."""
    return mixer_spec(
        domains,
        natural,
        state_dim,
        cfg.mixer,
        cfg.train.steps,
        cfg.train.seed,
        cfg.signals.progress_scale,
        state_spec,
        policy=cfg.target.policy or None,
        agent=cfg.agent if cfg.target.online_acodm else None,
    )


def _storage(cfg: ExperimentConfig, run_dir: Path) -> Storage:
    """`target.storage_path` (default: <run_dir>/ray_train) and the run's name, for Ray Train."""
    storage = cfg.target.storage_path or str(run_dir / RAY_STORAGE_DIR)
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return Storage(storage, run_dir.name)


def run_target(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    faults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the target with Ray Train and the served mixer; returns the summary. The run's
    lifecycle (run dir, config snapshot, tracking, summary) is `acodm_ray.run.Run`'s.

    `faults` (tests only; default: the JSON in $ACODM_TARGET_FAULTS) injects failures:
    {"crash": {"rank": r, "step": s, "marker": path}} makes rank r exit once after step s (the
    marker file makes it happen only once); {"kill_server_at": s} kills the policy server after step s.
    """
    if not ray.is_initialized():
        raise RuntimeError(
            "run_target needs a running Ray session (ray.init or jobs/_common.init_ray)"
        )
    require_backends(cfg)  # a missing tracking package stops the run before anything starts
    start = time.perf_counter()
    cfg = absolutize_paths(cfg)
    run_dir = Path(run_dir).expanduser().resolve()
    cfg = with_prepared(cfg)  # the corpus is prepared once, here; every worker opens it
    tokens, tokenizer = load_tokenized(cfg)
    state_spec = state_spec_for(cfg, tokens.vocab_size, tokens.eos_id, list(tokens.domains))
    spec = served_mixer(cfg, tokens, state_spec)
    storage = claim_storage(cfg, run_dir, resume, overwrite)
    with Run.start(cfg, run_dir, resume=resume, overwrite=overwrite) as run:
        if run.resume:
            check_same_mixer(run)
        run.snapshot()
        # rank 0 logs every step into the tracked run (and opens the W&B run); finish_run adds the
        # artifacts
        run.register()
        checkpoint, server_desc = fit(cfg, run.dir, spec, storage, faults)
        seconds = time.perf_counter() - start
        return finish_run(
            run, checkpoint, tokens, tokenizer, spec, state_spec, server_desc, seconds
        )


def served_mixer(cfg: ExperimentConfig, tokens, state_spec: dict[str, Any]) -> MixerSpec:
    """The mixer the run serves, refused (a policy whose domains or state differ from the run's)
    before anything is created."""
    domains = list(tokens.domains)
    spec = mixer_spec_for(cfg, domains, tokens.natural_proportions(), state_spec["dim"], state_spec)
    check_spec(spec)
    return spec


def claim_storage(cfg: ExperimentConfig, run_dir: Path, resume: bool, overwrite: bool) -> Storage:
    """Where Ray Train keeps the run's checkpoints; an external `target.storage_path` that already
    holds a run of this name is refused as the run dir is (or cleared with `overwrite`)."""
    storage = _storage(cfg, run_dir)
    held = Path(storage.path) / storage.name
    external = cfg.target.storage_path is not None and "://" not in storage.path
    if external and held.exists() and not resume:
        if not overwrite:
            raise RunDirExistsError(
                f"Ray Train storage {held} already holds a run; pass --resume or --overwrite"
            )
        shutil.rmtree(held)
    return storage


def check_same_mixer(run: Run) -> None:
    """A resumed run keeps the mixer it was trained with (its config.yaml says which)."""
    if not (run.dir / "config.yaml").is_file():
        return
    before = mixer_label(load_config(run.dir / "config.yaml"))
    if before != mixer_label(run.cfg):
        raise ValueError(
            f"{run.dir} was trained with mixer {before!r}; resume it with the same mixer, "
            f"not {mixer_label(run.cfg)!r}"
        )


def fit(
    cfg: ExperimentConfig,
    run_dir: Path,
    spec: MixerSpec,
    storage: Storage,
    faults: dict[str, Any] | None,
) -> tuple[Any, dict | None]:
    """Serve the mixer, run the `TorchTrainer`, stop the server: (the final checkpoint, the server's
    own account of the run, when this run started it and it is not detached)."""
    tc = cfg.target
    server, created = start_policy_server(
        spec, tc.server_name, tc.server_namespace, tc.server_detached
    )
    loop_config = {
        "cfg": to_dict(cfg),
        "run_dir": str(run_dir),
        "server": server,
        "faults": read_faults() if faults is None else faults,
        "acodm_home": os.environ.get("ACODM_HOME"),
    }
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend=None if tc.backend == "auto" else tc.backend),
        scaling_config=scaling_config(tc),
        run_config=RunConfig(
            name=storage.name,
            storage_path=storage.path,
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        first = str(err).splitlines()[0] if str(err) else ""
        raise TargetTrainingError(
            f"target training failed ({type(err).__name__}: {first}); the last checkpoint under "
            f"{storage.path}/{storage.name} is intact, rerun with --resume"
        ) from err
    finally:
        server_desc = _stop_server(server, created, tc)
    return result.checkpoint, server_desc


def _stop_server(server, created: bool, tc: TargetConfig) -> dict | None:
    """Stop the server this run started (a detached one stays), after asking for its account."""
    if not created or tc.server_detached:
        return None
    try:
        desc = ray.get(server.describe.remote(), timeout=10)
    except Exception:
        desc = None
    stop_policy_server(server, tc.server_name, tc.server_namespace)
    return desc


def scaling_config(tc: TargetConfig) -> ScalingConfig:
    """`target.num_workers` workers of `cpus_per_worker` CPUs (and GPUs, extra resources) each."""
    resources = {
        "CPU": float(tc.cpus_per_worker),
        **{k: float(v) for k, v in tc.resources_per_worker.items()},
    }
    if tc.use_gpu:
        resources["GPU"] = float(1.0 if tc.gpus_per_worker is None else tc.gpus_per_worker)
    return ScalingConfig(
        num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources
    )
