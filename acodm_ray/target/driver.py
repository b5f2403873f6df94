"""`run_target`: the driver side of a target run (see the package docstring): load the corpus, check
and start the served mixer, run the `TorchTrainer`, then save the model, the online agent's policy,
the summary and the plots."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acodm_ray.checkpoint import load_checkpoint
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.errors import AcodmError
from acodm_ray.policy_server import (
    MixerSpec,
    check_spec,
    mixer_spec,
    start_policy_server,
    stop_policy_server,
)
from acodm_ray.rundir import RunDirExistsError, prepare_run_dir, write_config, write_json
from acodm_ray.runplan import mixer_label
from acodm_ray.target.faults import read_faults
from acodm_ray.target.worker import TRAINER_FILE, train_worker

log = logging.getLogger("acodm_ray.target")

RAY_STORAGE_DIR = "ray_train"


class TargetTrainingError(AcodmError, RuntimeError):
    """The Ray Train run failed (after its allowed restarts)."""


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
    from transformers import AutoModelForCausalLM

    from acodm_ray.model import build_hf_config, state_params
    from acodm_ray.signals import make_state_spec

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


def closing_lines(summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[str]]:
    """(lines for stdout, warnings for stderr) that end a target run: what it reached, where it is."""
    ppl = (summary.get("final_val_ppl") or {}).get("average")
    lines = [
        f"done: {summary['steps']} steps with {summary['mixer']} on {summary['num_workers']} worker(s), "
        f"average validation perplexity {'n/a' if ppl is None else f'{ppl:.2f}'}; run dir {run_dir}",
        f"model: {summary['model_dir']}",
    ]
    warnings = []
    if summary.get("server_failures"):
        warnings.append(
            f"warning: the policy server was unreachable at {summary['server_failures']} decision(s); "
            "the last weights were kept"
        )
    return lines, warnings


def _storage(cfg: ExperimentConfig, run_dir: Path) -> tuple[str, str]:
    """(storage_path, run name) for Ray Train's RunConfig."""
    storage = cfg.target.storage_path or str(run_dir / RAY_STORAGE_DIR)
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return storage, run_dir.name


def run_target(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    faults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the target with Ray Train and the served mixer; returns the summary.

    `faults` (tests only; default: the JSON in $ACODM_TARGET_FAULTS) injects failures:
    {"crash": {"rank": r, "step": s, "marker": path}} makes rank r exit once after step s (the
    marker file makes it happen only once); {"kill_server_at": s} kills the policy server after step s.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from acodm_ray.data.load import load_tokenized, with_prepared
    from acodm_ray.tracking import ResultLogger, require_backends

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
    domains = list(tokens.domains)
    spec_state = state_spec_for(cfg, tokens.vocab_size, tokens.eos_id, domains)
    spec = mixer_spec_for(cfg, domains, tokens.natural_proportions(), spec_state["dim"], spec_state)
    check_spec(spec)  # refuse a mismatched policy before anything is created

    storage, ray_name = _storage(cfg, run_dir)
    external = cfg.target.storage_path is not None and "://" not in storage
    if external and (Path(storage) / ray_name).exists() and not resume:
        if overwrite:
            shutil.rmtree(Path(storage) / ray_name)
        else:
            raise RunDirExistsError(
                f"Ray Train storage {Path(storage) / ray_name} already holds a run; pass --resume or --overwrite"
            )
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if not resume:
        write_config(run_dir, cfg)
    elif (run_dir / "config.yaml").is_file():
        from acodm_ray.config import load_config

        before = mixer_label(load_config(run_dir / "config.yaml"))
        if before != mixer_label(cfg):
            raise ValueError(
                f"{run_dir} was trained with mixer {before!r}; resume it with the same mixer, "
                f"not {mixer_label(cfg)!r}"
            )
    # The run's MLflow run starts here, with the resolved config as params (or, resumed, the recorded
    # one is continued); rank 0 logs every step into it (and opens the W&B run), finish_run adds the
    # artifacts. W&B is left to rank 0 here: every wandb.init costs seconds.
    ResultLogger(
        dataclasses.replace(cfg.tracking, wandb=False),
        run_dir,
        params=to_dict(cfg),
        resume=resume,
        tensorboard=False,
    ).close()

    tc = cfg.target
    server, created = start_policy_server(
        spec, tc.server_name, tc.server_namespace, tc.server_detached
    )
    resources = {
        "CPU": float(tc.cpus_per_worker),
        **{k: float(v) for k, v in tc.resources_per_worker.items()},
    }
    if tc.use_gpu:
        resources["GPU"] = float(1.0 if tc.gpus_per_worker is None else tc.gpus_per_worker)
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
        scaling_config=ScalingConfig(
            num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=ray_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tc.keep_checkpoints),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as err:
        raise TargetTrainingError(
            f"target training failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            f"the last checkpoint under {storage}/{ray_name} is intact, rerun with --resume"
        ) from err
    finally:
        if created and not tc.server_detached:
            try:
                server_desc = ray.get(server.describe.remote(), timeout=10)
            except Exception:
                server_desc = None
            stop_policy_server(server, tc.server_name, tc.server_namespace)
        else:
            server_desc = None
    return finish_run(
        cfg,
        run_dir,
        result.checkpoint,
        tokens,
        tokenizer,
        spec,
        spec_state,
        server_desc,
        time.perf_counter() - start,
    )


def finish_run(
    cfg,
    run_dir: Path,
    checkpoint,
    tokens,
    tokenizer,
    spec: MixerSpec,
    state_spec: dict,
    server_desc: dict | None,
    seconds: float,
) -> dict[str, Any]:
    """Final model (save_pretrained + tokenizer), exported online actor, plots, summary.json."""
    from acodm_ray.metrics import read_metrics
    from acodm_ray.model import build_model

    if checkpoint is None:
        raise TargetTrainingError("the run reported no checkpoint")
    with checkpoint.as_directory() as d:
        payload = load_checkpoint(Path(d) / TRAINER_FILE)
    step = int(payload["trainer"]["step"])
    if step != cfg.train.steps:
        raise TargetTrainingError(
            f"the last checkpoint is at step {step}, expected {cfg.train.steps}"
        )
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, cfg.train.seed)
    model.load_state_dict(payload["trainer"]["model"])
    model_dir = run_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    summary: dict[str, Any] = {
        "mixer": payload.get("mixer_name"),
        "kind": spec.kind,
        "steps": step,
        "domains": list(tokens.domains),
        "num_workers": cfg.target.num_workers,
        "model_dir": str(model_dir),
        "checkpoint": str(checkpoint.path),
        "server_failures": int(payload.get("server_failures", 0)),
        "server_ok_at_end": bool(payload.get("server_ok", True)),
        "seconds": seconds,
    }
    if spec.kind == "policy":
        summary["policy"] = spec.policy_dir
    if spec.kind == "online" and payload.get("mixer"):
        from acodm_ray.agent.networks import Actor
        from acodm_ray.agent.policy_file import save_policy

        agent = payload["mixer"]["state"]
        actor = Actor.from_config(cfg.agent, spec.state_dim, len(spec.domains))
        actor.load_state_dict(agent["actor"])
        summary["policy"] = str(
            save_policy(run_dir / "policy", actor, list(tokens.domains), state_spec, to_dict(cfg))
        )
        summary["agent"] = {
            "updates": int(agent["num_updates"]),
            "warmup_steps": int(agent["warmup_steps"]),
            "transitions": int(agent["steps_seen"]),
        }
    steps, evals = read_metrics(run_dir)
    if steps:
        last = steps[-1]
        summary["final_weights"] = {d: last[f"weight/{d}"] for d in tokens.domains}
    if evals:
        summary["final_val_ppl"] = {
            k.split("/", 1)[1]: v for k, v in evals[-1].items() if k.startswith("val_ppl/")
        }
    if server_desc is not None:
        summary["server"] = {
            k: server_desc[k]
            for k in ("mixer", "kind", "num_weights_calls", "num_updates", "max_rss_mb")
        }
    try:
        summary["plots"] = _plots(
            run_dir, steps, evals, list(tokens.domains), summary["mixer"] or spec.kind
        )
    except Exception as err:  # plots are a convenience; never fail a finished run on them
        log.warning("plots failed: %s", err)
    write_json(run_dir / "summary.json", summary)
    from acodm_ray.tracking import ResultLogger

    with ResultLogger(cfg, run_dir, resume=True, tensorboard=False) as tracker:
        tracker.log_artifacts(
            {
                "model": model_dir,
                "policy": run_dir / "policy" if spec.kind == "online" else None,
                "plots": summary.get("plots", []),
                "summary": run_dir / "summary.json",
            }
        )
    return summary


def _plots(
    run_dir: Path, steps: list[dict], evals: list[dict], domains: list[str], label: str
) -> list[str]:
    from acodm_ray.plots import plot_curves, plot_weight_trajectories

    out = []
    if steps:
        w = np.array([[r[f"weight/{d}"] for d in domains] for r in steps])
        out.append(
            str(
                plot_weight_trajectories(
                    {label: w}, domains, run_dir / "weights.png", title="target domain weights"
                )
            )
        )
    if evals:
        x = [r["step"] for r in evals]
        y = [r["val_ppl/average"] for r in evals]
        out.append(str(plot_curves({label: (x, y, None)}, run_dir / "val_ppl.png")))
    return out
