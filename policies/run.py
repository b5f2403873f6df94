"""The proxy stage: train a mixing policy with RLlib on DataMixingEnv, checkpoint it, export it.

`run_proxy_rl` is what `jobs/proxy_rl.py` calls. It builds the algorithm from the registry (so
`--algo acodm|ppo|sac|appo` all run on the same env), trains for `rl.iterations`, saves an RLlib
checkpoint every `rl.checkpoint_every` iterations (atomically: a crash never leaves a broken
"latest"), resumes from it, logs every scalar of the result dict to TensorBoard, and exports the
policy (AC-ODM's softmax actor, or PPO/SAC/APPO's deterministic action) as a standalone policy
(safetensors + JSON) that loads without RLlib.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.data.load import with_prepared
from acodm_ray.rundir import prepare_run_dir, trim_jsonl, write_config, write_json
from acodm_ray.tracking import ResultLogger, flatten_scalars, require_backends
from envs import RLLIB_ENV, DataMixingEnv, register
from policies.callbacks import FIRST_STEP, named_mix_metrics
from policies.registry import build_algo_config

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
POLICY_DIR = "policy"


def env_config_for(cfg: ExperimentConfig, algo: str, max_decisions: int) -> dict[str, Any]:
    """AC-ODM warms up on ODM for `agent.warmup_fraction` of the proxy's decisions; algorithms that
    learn on-policy (PPO, APPO) or have no imitation phase (SAC) get no warm-up."""
    warmup = round(cfg.agent.warmup_fraction * max_decisions) if algo == "acodm" else 0
    return {"experiment": to_dict(cfg), "warmup_decisions": warmup, "action_mapping": "simplex"}


LEARNER_KEYS = {  # iterations.jsonl name -> the learner's metric (AC-ODM's learner logs all of them)
    "learner_updates": "num_updates",
    "actor_loss": "actor_loss",
    "critic_loss": "critic_loss",
    "td_error": "mean_abs_td_error",
    "actor_grad_norm": "actor_grad_norm",
    "critic_grad_norm": "critic_grad_norm",
    "policy_entropy": "weight_entropy",
    "value_spread": "value_spread",
    "temperature": "temperature",
    "optimum_gap": "optimum_gap",
    "in_warmup": "in_warmup",
}


def learner_diagnostics(
    scalars: dict[str, Any], module_id: str = "default_policy"
) -> dict[str, Any]:
    """The agent's diagnostics of an iteration, from RLlib's flattened result (absent ones omitted)."""
    prefix = f"learners/{module_id}/"
    return {
        name: scalars[prefix + key] for name, key in LEARNER_KEYS.items() if prefix + key in scalars
    }


def learner_warmup_updates(cfg: ExperimentConfig, warmup_decisions: int) -> int:
    """AC-ODM's imitation updates: `agent.warmup_updates`, or in the paper's setting (null) one per
    warm-up decision of an episode (x updates_per_step), as before it was a setting."""
    if cfg.agent.warmup_updates is not None:
        return int(cfg.agent.warmup_updates)
    return warmup_decisions * cfg.agent.updates_per_step


def save_algo_checkpoint(algo, run_dir: Path) -> Path:
    """Save to a temp dir, then swap it in, so the previous checkpoint survives a crash mid-save.

    A process killed inside the swap leaves `checkpoint.old` behind: next to a good `checkpoint/`
    (killed after the swap) it is stale and removed; alone (killed between the two renames) it is
    the last complete checkpoint, which `restore_algo` falls back to."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / (CHECKPOINT_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    algo.save_to_path(str(tmp.resolve()))
    old = run_dir / (CHECKPOINT_DIR + ".old")
    if final.exists():
        if old.exists():  # stale: a crash after the previous swap; renaming onto it would fail
            shutil.rmtree(old)
        final.replace(old)
    tmp.replace(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def restore_algo(algo, run_dir: Path) -> None:
    path = run_dir / CHECKPOINT_DIR
    old = run_dir / (CHECKPOINT_DIR + ".old")
    if not path.is_dir() and old.is_dir():
        log.warning("no %s; resuming from %s (a checkpoint save was interrupted)", path, old)
        path = old
    if not path.is_dir():
        raise FileNotFoundError(f"cannot resume: no RLlib checkpoint at {path}")
    try:
        algo.restore_from_path(str(path.resolve()))
    except Exception as err:
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ValueError(f"RLlib checkpoint {path} could not be restored ({detail})") from err


def trim_history(path: Path, last_iteration: int) -> None:
    """Drop iterations logged after the checkpoint we resume from (a run stopped between an
    iteration's log line and its checkpoint), so no iteration appears twice."""
    trim_jsonl(path, lambda record: record["iteration"] <= last_iteration)


def run_proxy_rl(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    rollout: bool = True,
) -> dict[str, Any]:
    """Train `cfg.rl.algo` on the proxy env; returns the run summary (also written to summary.json)."""
    require_backends(cfg)
    register()
    algo_name = cfg.rl.algo
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if not resume:
        write_config(run_dir, cfg)
    cfg = with_prepared(cfg)  # the corpus is prepared once, here; every env runner opens it
    probe = DataMixingEnv({"experiment": to_dict(cfg)})
    probe.reset(seed=cfg.train.seed)
    state_spec = probe.trainer.state_spec
    env_config = env_config_for(cfg, algo_name, probe.max_decisions)
    algo = build_algo_config(
        algo_name,
        RLLIB_ENV,
        env_config,
        cfg.agent,
        cfg.rl,
        cfg.train.seed,
        warmup_updates=learner_warmup_updates(cfg, env_config["warmup_decisions"]),
    ).build_algo()
    if resume:
        try:
            restore_algo(algo, run_dir)
        except Exception:
            algo.stop()  # free its env runners and learner before the error reaches the caller
            raise
        log.info("resumed %s at iteration %d", run_dir, algo.iteration)
    results = ResultLogger(cfg, run_dir, params=to_dict(cfg), resume=resume)
    history = run_dir / "iterations.jsonl"
    if resume:
        trim_history(history, algo.iteration)
    bar = progress_bar(cfg, algo_name, probe.max_decisions)
    try:
        while algo.iteration < cfg.rl.iterations:
            start = time.perf_counter()
            result = algo.train()
            scalars = flatten_scalars(result)
            results.log(scalars, step=algo.iteration)
            record = {
                "iteration": algo.iteration,
                "seconds": time.perf_counter() - start,
                "env_steps": scalars.get("num_env_steps_sampled_lifetime"),
                "episode_return_mean": scalars.get("env_runners/episode_return_mean"),
                "healthy_env_runners": algo.env_runner_group.num_healthy_remote_workers(),
                "env_step_s": scalars.get("env_runners/env_step_timer"),
                "first_env_step_time": scalars.get("env_runners/" + FIRST_STEP),
                "learner_update_s": scalars.get("timers/learner_update_timer"),
                **learner_diagnostics(scalars),
                **named_mix_metrics(scalars, probe.domains),
            }
            with open(history, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.update(int(record["env_steps"] or 0) - bar.n)
            bar.write(iteration_line(record, cfg.rl.iterations))
            if algo.iteration % cfg.rl.checkpoint_every == 0 or algo.iteration == cfg.rl.iterations:
                save_algo_checkpoint(algo, run_dir)
        bar.close()
        summary: dict[str, Any] = {
            "algo": algo_name,
            "iterations": algo.iteration,
            "domains": probe.domains,
            "checkpoint": str(run_dir / CHECKPOINT_DIR),
        }
        # every algorithm's policy: kind "actor" for acodm, "mlp" for ppo/sac/appo
        from policies.export import export_policy

        policy_dir = export_policy(
            algo, run_dir / POLICY_DIR, probe.domains, state_spec, to_dict(cfg)
        )
        summary["policy"] = str(policy_dir)
        if rollout:
            from acodm_ray.rollout import compare_with_odm

            label = "AC-ODM policy" if algo_name == "acodm" else f"{algo_name.upper()} policy"
            summary["rollout"] = compare_with_odm(policy_dir, cfg, run_dir, label=label)
        write_json(run_dir / "summary.json", summary)
        results.log_artifacts(
            {
                "policy": policy_dir,
                "summary": run_dir / "summary.json",
                "plots": [summary["rollout"]["plot"]] if "rollout" in summary else [],
            }
        )
    except BaseException:
        results.close("FAILED")
        raise
    finally:
        bar.close()
        results.close()
        algo.stop()
    return summary


def progress_bar(cfg: ExperimentConfig, algo_name: str, episode_steps: int):
    """A bar over the proxy's env steps (rl.iterations x rl.min_sample_timesteps_per_iteration),
    advanced after each RLlib iteration."""
    from tqdm import tqdm

    total = cfg.rl.iterations * cfg.rl.min_sample_timesteps_per_iteration
    return tqdm(
        total=total,
        desc=f"proxy env steps ({algo_name}, {episode_steps}-step episodes)",
        unit="step",
        dynamic_ncols=True,
    )


def iteration_line(record: dict[str, Any], iterations: int) -> str:
    """One readable line per RLlib iteration."""
    ret = record.get("episode_return_mean")
    ret_text = "no episode finished yet" if ret is None else f"mean episode return {ret:+.3f}"
    steps = record.get("env_steps")
    return (
        f"iteration {record['iteration']}/{iterations}: {int(steps or 0):,} env steps, {ret_text}, "
        f"{record['seconds']:.1f} s"
    )


def closing_summary(summary: dict[str, Any], run_dir: Path, config: str | None) -> str:
    """What the run produced and what to run next, as a few readable lines."""
    lines = [
        f"proxy_rl: done: {summary['iterations']} iterations of {summary['algo']}; run dir {run_dir}"
    ]
    rollout = summary.get("rollout")
    if rollout:
        weights = rollout["policy_mean_weights"]
        top = sorted(weights.items(), key=lambda kv: -kv[1])
        lines.append(
            "proxy_rl: the learned policy's mean domain weights over a proxy run: "
            + ", ".join(f"{d} {w:.2f}" for d, w in top)
        )
        ppl, odm = rollout["policy_val_ppl"]["average"], rollout["odm_val_ppl"]["average"]
        verdict = "better than" if ppl < odm else "worse than" if ppl > odm else "equal to"
        lines.append(
            f"proxy_rl: its proxy's final average validation perplexity is {ppl:.1f}, {verdict} "
            f"ODM's {odm:.1f} from the same seed (mean total-variation distance between their "
            f"weights {rollout['mean_tv_distance_to_odm']:.2f})"
        )
        lines.append(f"proxy_rl: plot of both weight trajectories: {rollout['plot']}")
    if "policy" in summary:
        lines.append(f"proxy_rl: exported policy: {summary['policy']}")
        lines.append(
            "proxy_rl: next, pretrain the target with it: python jobs/target_pretrain.py "
            f"--config {config or 'CONFIG'} --policy {summary['policy']}"
        )
    return "\n".join(lines)
