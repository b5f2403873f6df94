"""Target pretraining on Ray Train with the mixer served by a `PolicyServer` (library side, no RLlib).

`run_target` (what `jobs/target_pretrain.py` calls) runs on the driver:
  1. loads the corpus (building the on-disk caches the workers then read), decides the mixer --
     an exported policy (proxy mode, `target.policy`), the online AC-ODM agent (non-proxy mode,
     `target.online_acodm`) or `cfg.mixer` (uniform/natural/file/odm) -- and refuses a policy whose
     domains or state size differ from the run's before anything starts;
  2. starts the named `PolicyServer` actor (num_cpus=0);
  3. runs `ray.train.torch.TorchTrainer(train_worker)` with ScalingConfig/RunConfig/FailureConfig
     from `cfg.target`;
  4. saves the final model (`save_pretrained` + tokenizer) from the final checkpoint into
     <run dir>/model, the learned actor of an online run into <run dir>/policy, summary and plots.

`train_worker` runs on every Train worker:
  - builds the tokenized corpus (disk cache) and an `LMTrainer` with the run's seed (identical
    model init and domain plan on every rank; the sampler's windows are seeded per rank) and a
    `TorchCollective` over torch.distributed (gloo on CPU, nccl on GPU);
  - every `target.decide_every` steps rank 0 asks the server for weights from the trainer's state
    (built from per-domain losses/counts already summed over all workers) and broadcasts them, so
    every rank samples with the same weights (checked at every step when
    `target.check_weights_sync`); rank 0 sends each step's signals to the server's `update`;
  - evaluates per-domain validation perplexity every `train.eval_every` steps, and calls
    `ray.train.report(metrics, checkpoint=...)` with a checkpoint every `train.checkpoint_every`
    steps (and at the end): trainer.pt (model, optimizer, sampler, tracker, step; rank 0) + the
    mixer/server state + the weights in use, and rank<r>.pt (each rank's own sampler RNG).

Resume: a restarted worker group (FailureConfig.max_failures) or a restarted job with the same
run name (`--resume`) gets the latest checkpoint from `ray.train.get_checkpoint()`; every rank
restores its full state at step s (model, optimizer, LR step, its own sampler RNGs, state tracker,
the weights in use), rank 0 restores the server's mixer state of step s and drops the metrics and
rank logs written after s, and training continues at step s + 1. A checkpoint counts only once
every rank has reported it, and rank 0 waits until Ray Train has committed it
(`get_all_reported_checkpoints(COMMITTED)`) before the next step, so a worker lost after step s
resumes from s, not from an older checkpoint. Every step after s is recomputed from the restored
RNG states, so the resumed run takes exactly the steps an uninterrupted run takes: none lost, none
repeated in the metrics.

Why no DDP wrapper: `LMTrainer` already sums per-domain losses and per-domain alignment gradients
and averages the parameter gradients through its `Collective` (`_sync_grads`), after reading each
micro-batch's alignment gradients from the LOCAL `.grad`. DDP's autograd hooks would all-reduce
every micro-batch's gradients during backward (so the per-domain differences would already be
world-averaged, then summed again) and average the gradients a second time. A plain
`torch.distributed.all_reduce` Collective reduces every gradient exactly once, per step.

If the server is unreachable, training continues with the last weights and a warning (see
`PolicyClient`); the mixer is never switched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acodm_ray.config import ExperimentConfig, from_dict, to_dict
from acodm_ray.errors import AcodmError
from acodm_ray.policy_server import (
    MixerSpec,
    max_rss_mb,
    PolicyClient,
    PolicyServerUnavailable,
    check_spec,
    mixer_spec,
    start_policy_server,
    stop_policy_server,
)
from acodm_ray.mixers import SCORE_MIXERS
from acodm_ray.rundir import RunDirExistsError, prepare_run_dir, write_config, write_json
from acodm_ray.collective import TorchCollective, default_collective
from acodm_ray.train_step import NonFiniteLossError, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

FAULTS_ENV = "ACODM_TARGET_FAULTS"  # test hook, JSON: {"crash": {"rank", "step", "marker"}, "kill_server_at": s}
TRAINER_FILE = "trainer.pt"
RANK_FILE = "rank{rank}.pt"
RAY_STORAGE_DIR = "ray_train"


class TargetTrainingError(AcodmError, RuntimeError):
    """The Ray Train run failed (after its allowed restarts)."""


# ---------------------------------------------------------------------- driver-side helpers


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
        domain_files={k: [_abs_if_exists(f) for f in v] for k, v in cfg.corpus.domain_files.items()},
    )
    cfg.tokenizer = dataclasses.replace(cfg.tokenizer, path=_abs_if_exists(cfg.tokenizer.path))
    cfg.mixer = dataclasses.replace(cfg.mixer, weights_file=_abs_if_exists(cfg.mixer.weights_file))
    cfg.target = dataclasses.replace(cfg.target, policy=_abs_if_exists(cfg.target.policy))
    return cfg


def state_spec_for(cfg: ExperimentConfig, vocab_size: int, eos_id: int, domains: list[str]) -> dict[str, Any]:
    """The run's state spec (as `LMTrainer.state_spec`), from a model built on the meta device."""
    from transformers import AutoModelForCausalLM

    from acodm_ray.model import build_hf_config, state_params
    from acodm_ray.signals import make_state_spec

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(build_hf_config(cfg.model, vocab_size, eos_id),
                                                 trust_remote_code=cfg.model.trust_remote_code)
    names = [n for n, _ in state_params(model, cfg.signals.param_suffix, cfg.signals.state_layers)]
    return make_state_spec(list(domains), names, cfg.signals.progress_scale, cfg.signals.z_clip)


def mixer_spec_for(cfg: ExperimentConfig, domains: list[str], natural: np.ndarray, state_dim: int,
                   state_spec: dict[str, Any] | None = None) -> MixerSpec:
    """Which mixer the run serves: target.policy > target.online_acodm > cfg.mixer."""
    return mixer_spec(domains, natural, state_dim, cfg.mixer, cfg.train.steps, cfg.train.seed,
                      cfg.signals.progress_scale, state_spec, policy=cfg.target.policy or None,
                      agent=cfg.agent if cfg.target.online_acodm else None)


def mixer_label(cfg: ExperimentConfig) -> str:
    if cfg.target.policy:
        return "policy"
    if cfg.target.online_acodm:
        return "acodm-online"
    return cfg.mixer.name


def _storage(cfg: ExperimentConfig, run_dir: Path) -> tuple[str, str]:
    """(storage_path, run name) for Ray Train's RunConfig."""
    storage = cfg.target.storage_path or str(run_dir / RAY_STORAGE_DIR)
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return storage, run_dir.name


def _read_faults() -> dict[str, Any]:
    raw = os.environ.get(FAULTS_ENV)
    return json.loads(raw) if raw else {}


# ---------------------------------------------------------------------- the driver


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

    from acodm_ray.data.load import load_tokenized

    from acodm_ray.tracking import ResultLogger, require_backends

    if not ray.is_initialized():
        raise RuntimeError("run_target needs a running Ray session (ray.init or jobs/_common.init_ray)")
    require_backends(cfg)  # a missing tracking package stops the run before anything starts
    start = time.perf_counter()
    cfg = absolutize_paths(cfg)
    run_dir = Path(run_dir).expanduser().resolve()
    tokens, tokenizer = load_tokenized(cfg)  # builds the caches once, on the driver
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
            raise ValueError(f"{run_dir} was trained with mixer {before!r}; resume it with the same mixer, "
                             f"not {mixer_label(cfg)!r}")
    # The run's MLflow run starts here, with the resolved config as params (or, resumed, the recorded
    # one is continued); rank 0 logs every step into it (and opens the W&B run), finish_run adds the
    # artifacts. W&B is left to rank 0 here: every wandb.init costs seconds.
    ResultLogger(dataclasses.replace(cfg.tracking, wandb=False), run_dir, params=to_dict(cfg), resume=resume,
                 tensorboard=False).close()

    tc = cfg.target
    server, created = start_policy_server(spec, tc.server_name, tc.server_namespace, tc.server_detached)
    resources = {"CPU": float(tc.cpus_per_worker), **{k: float(v) for k, v in tc.resources_per_worker.items()}}
    if tc.use_gpu:
        resources["GPU"] = float(1.0 if tc.gpus_per_worker is None else tc.gpus_per_worker)
    loop_config = {
        "cfg": to_dict(cfg),
        "run_dir": str(run_dir),
        "server": server,
        "faults": _read_faults() if faults is None else faults,
        "acodm_home": os.environ.get("ACODM_HOME"),
    }
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend=None if tc.backend == "auto" else tc.backend),
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources),
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
    return finish_run(cfg, run_dir, result.checkpoint, tokens, tokenizer, spec, spec_state, server_desc,
                      time.perf_counter() - start)


def finish_run(cfg, run_dir: Path, checkpoint, tokens, tokenizer, spec: MixerSpec, state_spec: dict,
               server_desc: dict | None, seconds: float) -> dict[str, Any]:
    """Final model (save_pretrained + tokenizer), exported online actor, plots, summary.json."""
    from acodm_ray.metrics import read_metrics
    from acodm_ray.model import build_model

    if checkpoint is None:
        raise TargetTrainingError("the run reported no checkpoint")
    with checkpoint.as_directory() as d:
        payload = load_checkpoint(Path(d) / TRAINER_FILE)
    step = int(payload["trainer"]["step"])
    if step != cfg.train.steps:
        raise TargetTrainingError(f"the last checkpoint is at step {step}, expected {cfg.train.steps}")
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
        summary["policy"] = str(save_policy(run_dir / "policy", actor, list(tokens.domains), state_spec, to_dict(cfg)))
        summary["agent"] = {"updates": int(agent["num_updates"]), "warmup_steps": int(agent["warmup_steps"]),
                            "transitions": int(agent["steps_seen"])}
    steps, evals = read_metrics(run_dir)
    if steps:
        last = steps[-1]
        summary["final_weights"] = {d: last[f"weight/{d}"] for d in tokens.domains}
    if evals:
        summary["final_val_ppl"] = {k.split("/", 1)[1]: v for k, v in evals[-1].items() if k.startswith("val_ppl/")}
    if server_desc is not None:
        summary["server"] = {k: server_desc[k] for k in ("mixer", "kind", "num_weights_calls", "num_updates", "max_rss_mb")}
    try:
        summary["plots"] = _plots(run_dir, steps, evals, list(tokens.domains), summary["mixer"] or spec.kind)
    except Exception as err:  # plots are a convenience; never fail a finished run on them
        log.warning("plots failed: %s", err)
    write_json(run_dir / "summary.json", summary)
    from acodm_ray.tracking import ResultLogger

    with ResultLogger(cfg, run_dir, resume=True, tensorboard=False) as tracker:
        tracker.log_artifacts({"model": model_dir, "policy": run_dir / "policy" if spec.kind == "online" else None,
                               "plots": summary.get("plots", []), "summary": run_dir / "summary.json"})
    return summary


def _plots(run_dir: Path, steps: list[dict], evals: list[dict], domains: list[str], label: str) -> list[str]:
    from acodm_ray.plots import plot_curves, plot_weight_trajectories

    out = []
    if steps:
        w = np.array([[r[f"weight/{d}"] for d in domains] for r in steps])
        out.append(str(plot_weight_trajectories({label: w}, domains, run_dir / "weights.png", title="target domain weights")))
    if evals:
        x = [r["step"] for r in evals]
        y = [r["val_ppl/average"] for r in evals]
        out.append(str(plot_curves({label: (x, y, None)}, run_dir / "val_ppl.png")))
    return out


# ---------------------------------------------------------------------- the worker


class _RankLog:
    """ranks/rank<r>.jsonl: the weights each rank trained with at every step (and whether rank 0 got
    them fresh from the server)."""

    def __init__(self, run_dir: Path, rank: int, enabled: bool) -> None:
        self.path = run_dir / "ranks" / f"rank{rank}.jsonl"
        self.enabled = enabled
        self._f = None

    def open(self, last_step: int) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= last_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        self._f = open(self.path, "a")

    def write(self, record: dict[str, Any]) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def _event(run_dir: Path, **record: Any) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), **record}) + "\n")


def _trim_events(run_dir: Path, last_step: int) -> None:
    path = run_dir / "events.jsonl"
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines()
                if ln and (json.loads(ln).get("event") in ("start", "resume") or json.loads(ln).get("step", 0) <= last_step)]
        path.write_text("".join(ln + "\n" for ln in keep))


def train_worker(config: dict[str, Any]) -> None:
    """The per-worker training function of `run_target` (runs in every Ray Train worker)."""
    import ray.train
    import ray.train.torch

    from acodm_ray.data.load import load_tokenized
    from acodm_ray.metrics import MetricsWriter
    from acodm_ray.pretrain import trim_metrics
    from acodm_ray.train_step import LMTrainer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if config.get("acodm_home"):
        os.environ["ACODM_HOME"] = config["acodm_home"]
    cfg: ExperimentConfig = from_dict(ExperimentConfig, config["cfg"])
    tc, t = cfg.target, cfg.train
    run_dir = Path(config["run_dir"])
    faults = config.get("faults") or {}
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if tc.use_gpu else torch.device("cpu")
    collective = default_collective(device)

    tokens, _ = load_tokenized(cfg)
    K = len(tokens.domains)
    client = PolicyClient(config["server"], tc.server_name, tc.server_namespace, tc.server_timeout_s) if rank == 0 else None
    # alignment scores cost a [K, P] all-reduce per step: only when the mixer learns from them
    compute_scores = tc.online_acodm or tc.compute_scores or (not tc.policy and cfg.mixer.name in SCORE_MIXERS)
    trainer = LMTrainer(cfg, tokens, seed=t.seed, rank=rank, collective=collective,
                        compute_signals=compute_scores, device=device)

    current: np.ndarray | None = None
    server_failures = 0
    last_mixer_state, last_mixer_step = None, None  # the newest mixer state received (rank 0)
    mixer_name = client.description["mixer"] if client is not None and client.description else None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            payload = load_checkpoint(Path(d) / TRAINER_FILE)
            trainer.load_state_dict(payload["trainer"])
            own = Path(d) / RANK_FILE.format(rank=rank)
            if own.is_file():
                trainer.sampler.load_state_dict(load_checkpoint(own)["sampler"])
            else:
                log.warning("checkpoint has no sampler state for rank %d (world size changed from %s): its windows "
                            "restart from the seed", rank, payload.get("world_size"))
        current = np.asarray(payload["weights"], dtype=np.float64)
        server_failures = int(payload.get("server_failures", 0))
        last_mixer_state, last_mixer_step = payload.get("mixer"), payload.get("mixer_step")
        mixer_name = mixer_name or payload.get("mixer_name")
        if rank == 0:
            if payload.get("mixer") is not None:
                if not client.load_state_dict(payload["mixer"]):
                    log.warning("could not restore the policy server's state (unreachable)")
            if not payload.get("server_ok", True):
                log.warning("the checkpoint was written while the policy server was unreachable; its mixer state "
                            "is from step %s", payload.get("mixer_step"))
            client.last_weights = current.copy()
    else:
        if rank == 0 and client.available:
            client.reset()  # a fresh start (or a restart before the first checkpoint)
        # same seed on every rank gives the same init; broadcast anyway so ranks can never drift
        for p in trainer.model.parameters():
            if world > 1:
                collective.broadcast_(p.data, 0)
    start_step = trainer.step_count
    rank_log = _RankLog(run_dir, rank, tc.rank_logs)
    rank_log.open(start_step)
    writer = None
    if rank == 0:
        trim_metrics(run_dir, start_step)
        _trim_events(run_dir, start_step)
        _event(run_dir, event="resume" if checkpoint is not None else "start", step=start_step, world_size=world)
        writer = MetricsWriter(run_dir, tokens.domains, tracking=cfg.tracking, params=config["cfg"], resume=True)
        log.info("target training: rank 0 of %d, steps %d -> %d, mixer %s", world, start_step, t.steps,
                 client.description and client.description["mixer"])
    bar = _step_bar(t.steps, start_step, mixer_name) if rank == 0 else None
    try:
        while trainer.step_count < t.steps:
            s = trainer.step_count
            fresh = True
            t_iter = time.perf_counter()
            if s % tc.decide_every == 0 or current is None:
                buf = torch.zeros(K + 1, dtype=torch.float64)  # weights + "valid" flag
                if rank == 0:
                    try:
                        w, fresh = client.weights(trainer.last_state)
                        buf[:K] = torch.from_numpy(w)
                        buf[K] = 1.0
                    except PolicyServerUnavailable as err:
                        log.error("%s", err)
                    if not fresh:
                        server_failures += 1
                        _event(run_dir, event="server_unreachable", step=s + 1, error=client.last_error)
                collective.broadcast_(buf, 0)
                if buf[K] != 1.0:
                    raise PolicyServerUnavailable(
                        "the policy server is unreachable and no weights were received yet; nothing to train with"
                    )
                current = buf[:K].numpy().copy()
            t_decide = time.perf_counter() - t_iter
            if tc.check_weights_sync and not collective.same_on_all(torch.from_numpy(current)):
                raise RuntimeError(f"rank {rank}: domain weights differ across workers at step {s + 1}")
            signals = trainer.step(current)
            if not signals.finite:
                raise NonFiniteLossError(f"loss is {signals.loss} at step {signals.step}; the update was skipped")
            step = trainer.step_count
            if rank == 0:
                client.update(signals)
                writer.log_step(signals)
                bar.update(1)
            rank_log.write({"step": step, "rank": rank, "weights": current.tolist(),
                            "decided": s % tc.decide_every == 0, "fresh": bool(fresh),
                            "seconds": time.perf_counter() - t_iter, "decide_seconds": t_decide,
                            "max_rss_mb": max_rss_mb()})
            _inject_faults(faults, rank, step, client)
            final = step == t.steps
            ppl = None
            if step % t.eval_every == 0 or final:
                ppl = trainer.evaluate()
                if rank == 0:
                    writer.log_eval(step, ppl)
                    log.info("step %d: loss %.4f, average val ppl %.2f", step, signals.loss, ppl["average"])
            is_ckpt = step % t.checkpoint_every == 0 or final
            if ppl is None and not is_ckpt:
                continue
            metrics = {"step": step, "loss": signals.loss, "lr": signals.lr, "tokens": signals.tokens,
                       "server_failures": server_failures,
                       **{f"weight/{d}": float(x) for d, x in zip(tokens.domains, current)}}
            if ppl is not None:
                metrics.update({f"val_ppl/{k}": v for k, v in ppl.items()})
            if not is_ckpt:
                ray.train.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    mixer_state = client.state_dict()
                    if mixer_state is not None:
                        last_mixer_state, last_mixer_step = mixer_state, step
                    save_checkpoint(Path(d) / TRAINER_FILE, {
                        "trainer": trainer.state_dict(),
                        "mixer": last_mixer_state,
                        "mixer_step": last_mixer_step,
                        "mixer_name": mixer_name,
                        "weights": current.tolist(),
                        "server_ok": mixer_state is not None,
                        "server_failures": server_failures,
                        "world_size": world,
                    })
                save_checkpoint(Path(d) / RANK_FILE.format(rank=rank),
                                {"sampler": trainer.sampler.state_dict(), "rank": rank, "world_size": world})
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d),
                                 checkpoint_dir_name=f"checkpoint_{step:08d}")
            if rank == 0:
                # Wait until Ray Train has committed it (the controller registers reports when it polls
                # the workers): a worker lost after this point resumes from step `step`, not earlier.
                ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
    finally:
        rank_log.close()
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()


def _step_bar(total: int, initial: int, mixer: str | None):
    """Rank 0's progress bar over the target's steps, drawn by the driver (`ray.experimental.tqdm_ray`:
    a plain tqdm in a Train worker would print one line per refresh through the worker's log)."""
    from ray.experimental.tqdm_ray import tqdm

    bar = tqdm(total=total, desc=f"target steps ({mixer or 'mixer'})")
    if initial:
        bar.update(initial)
    return bar


def _inject_faults(faults: dict[str, Any], rank: int, step: int, client: PolicyClient | None) -> None:
    """Test hooks (ACODM_TARGET_FAULTS on the driver): kill a worker once, or the policy server."""
    crash = faults.get("crash")
    if crash and rank == int(crash["rank"]) and step == int(crash["step"]):
        marker = Path(crash["marker"])
        if not marker.exists():
            marker.write_text(f"rank {rank} killed at step {step}\n")
            log.warning("fault injection: rank %d exits at step %d", rank, step)
            os._exit(1)
    kill_at = faults.get("kill_server_at")
    if kill_at is not None and rank == 0 and step == int(kill_at) and client is not None:
        log.warning("fault injection: killing the policy server at step %d", step)
        client.kill()


__all__ = ["run_target", "train_worker", "TorchCollective", "TargetTrainingError", "mixer_spec_for",
           "state_spec_for", "absolutize_paths", "FAULTS_ENV"]
