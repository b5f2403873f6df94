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

from tqdm import tqdm

from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.data.load import with_prepared
from acodm_ray.run import Run, due
from acodm_ray.rundir import trim_jsonl
from acodm_ray.tracking import flatten_scalars
from envs import RLLIB_ENV, DataMixingEnv, register
from policies.callbacks import FIRST_STEP, named_mix_metrics
from policies.export import export_policy
from policies.registry import build_algo_config

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
POLICY_DIR = "policy"
HISTORY = "iterations.jsonl"  # one record per RLlib iteration


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
    """Train `cfg.rl.algo` on the proxy env; returns the run summary (also written to summary.json).
    The run's lifecycle (run dir, config snapshot, tracking, summary) is `acodm_ray.run.Run`'s."""
    register()
    with Run.start(cfg, run_dir, resume=resume, overwrite=overwrite) as run:
        run.snapshot()
        cfg = with_prepared(cfg)  # the corpus is prepared once, here; every env runner opens it
        probe = DataMixingEnv({"experiment": to_dict(cfg)})
        probe.reset(seed=cfg.train.seed)
        algo = build_algo(cfg, probe.max_decisions)
        try:
            if run.resume:
                resume_algo(algo, run.dir)
            train_algo(algo, cfg, probe.domains, probe.max_decisions, run.track(cfg), run.dir)
            summary = proxy_summary(algo, cfg, probe, run.dir, rollout)
            return run.finish(summary, proxy_artifacts(summary, run.summary_path))
        finally:
            algo.stop()  # frees its env runners and learner, whatever happened


def build_algo(cfg: ExperimentConfig, max_decisions: int):
    """The RLlib algorithm of `cfg.rl.algo` on the proxy env, from the registry."""
    env_config = env_config_for(cfg, cfg.rl.algo, max_decisions)
    return build_algo_config(
        cfg.rl.algo,
        RLLIB_ENV,
        env_config,
        cfg.agent,
        cfg.rl,
        cfg.train.seed,
        warmup_updates=learner_warmup_updates(cfg, env_config["warmup_decisions"]),
    ).build_algo()


def resume_algo(algo, run_dir: Path) -> None:
    """The algorithm as its last checkpoint left it, and no iteration logged after that one."""
    restore_algo(algo, run_dir)
    log.info("resumed %s at iteration %d", run_dir, algo.iteration)
    trim_history(run_dir / HISTORY, algo.iteration)


def train_algo(
    algo, cfg: ExperimentConfig, domains: list[str], episode_steps: int, results, run_dir: Path
) -> None:
    """RLlib iterations until `rl.iterations`: each one logged (every scalar to the tracker, a record
    to iterations.jsonl, a line to the terminal) and checkpointed when due."""
    history = run_dir / HISTORY
    with progress_bar(cfg, cfg.rl.algo, episode_steps) as bar:
        while algo.iteration < cfg.rl.iterations:
            start = time.perf_counter()
            scalars = flatten_scalars(algo.train())
            results.log(scalars, step=algo.iteration)
            record = iteration_record(algo, scalars, time.perf_counter() - start, domains)
            with open(history, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.update(int(record["env_steps"] or 0) - bar.n)
            bar.write(iteration_line(record, cfg.rl.iterations))
            if due(algo.iteration, cfg.rl.checkpoint_every, cfg.rl.iterations):
                save_algo_checkpoint(algo, run_dir)


def iteration_record(
    algo, scalars: dict[str, Any], seconds: float, domains: list[str]
) -> dict[str, Any]:
    """One line of iterations.jsonl: the iteration's counters, timers, the agent's diagnostics and
    the mix it trained with, by domain name."""
    return {
        "iteration": algo.iteration,
        "seconds": seconds,
        "env_steps": scalars.get("num_env_steps_sampled_lifetime"),
        "episode_return_mean": scalars.get("env_runners/episode_return_mean"),
        "healthy_env_runners": algo.env_runner_group.num_healthy_remote_workers(),
        "env_step_s": scalars.get("env_runners/env_step_timer"),
        "first_env_step_time": scalars.get("env_runners/" + FIRST_STEP),
        "learner_update_s": scalars.get("timers/learner_update_timer"),
        **learner_diagnostics(scalars),
        **named_mix_metrics(scalars, domains),
    }


def proxy_summary(
    algo, cfg: ExperimentConfig, probe: DataMixingEnv, run_dir: Path, rollout: bool
) -> dict[str, Any]:
    """summary.json of the stage, after exporting its policy (every algorithm's: kind "actor" for
    acodm, "mlp" for ppo/sac/appo) and, with `rollout`, running it against ODM on a fresh proxy
    (and against uniform, with named targets: `acodm_ray.rollout.compare_with_odm`)."""
    summary: dict[str, Any] = {
        "algo": cfg.rl.algo,
        "iterations": algo.iteration,
        "domains": probe.domains,
        "checkpoint": str(run_dir / CHECKPOINT_DIR),
    }
    policy_dir = export_policy(
        algo, run_dir / POLICY_DIR, probe.domains, probe.trainer.state_spec, to_dict(cfg)
    )
    summary["policy"] = str(policy_dir)
    if rollout:
        # lazy: the rollout's plot imports matplotlib, which a stage without a rollout never needs
        from acodm_ray.rollout import compare_with_odm, decoy_domains

        label = "AC-ODM policy" if cfg.rl.algo == "acodm" else f"{cfg.rl.algo.upper()} policy"
        decoys = decoy_domains(probe.domains, cfg.train.eval_domains)
        summary["rollout"] = compare_with_odm(policy_dir, cfg, run_dir, label, decoys)
    return summary


def proxy_artifacts(summary: dict[str, Any], summary_path: Path) -> dict[str, Any]:
    """What the stage uploads to its tracked run: the policy, the summary, the rollout's plot."""
    return {
        "policy": Path(summary["policy"]),
        "summary": summary_path,
        "plots": [summary["rollout"]["plot"]] if "rollout" in summary else [],
    }


def progress_bar(cfg: ExperimentConfig, algo_name: str, episode_steps: int):
    """A bar over the proxy's env steps (rl.iterations x rl.min_sample_timesteps_per_iteration),
    advanced after each RLlib iteration."""
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


def closing_lines(
    summary: dict[str, Any], run_dir: Path, config: str | None
) -> tuple[list[str], list[str]]:
    """(lines for stdout, warnings for stderr) that end the stage: what it produced and what to run
    next."""
    lines = [f"done: {summary['iterations']} iterations of {summary['algo']}; run dir {run_dir}"]
    rollout = summary.get("rollout")
    if rollout:
        weights = rollout["policy_mean_weights"]
        top = sorted(weights.items(), key=lambda kv: -kv[1])
        lines.append(
            "the learned policy's mean domain weights over a proxy run: "
            + ", ".join(f"{d} {w:.2f}" for d, w in top)
        )
        if "comparison" in rollout:
            lines += comparison_lines(rollout["comparison"])
        else:
            ppl, odm = rollout["policy_val_ppl"]["average"], rollout["odm_val_ppl"]["average"]
            verdict = "better than" if ppl < odm else "worse than" if ppl > odm else "equal to"
            lines.append(
                f"its proxy's final average validation perplexity is {ppl:.1f}, {verdict} "
                f"ODM's {odm:.1f} from the same seed (mean total-variation distance between their "
                f"weights {rollout['mean_tv_distance_to_odm']:.2f})"
            )
        lines.append(f"plot of both weight trajectories: {rollout['plot']}")
    if "policy" in summary:
        lines.append(f"exported policy: {summary['policy']}")
        lines.append(
            "next, pretrain the target with it: python jobs/target_pretrain.py "
            f"--config {config or 'CONFIG'} --policy {summary['policy']}"
        )
    return lines, []


def comparison_lines(comparison: dict[str, Any]) -> list[str]:
    """The closing table of a rollout with decoys (`acodm_ray.rollout.mix_comparison`): each
    method's average validation perplexity on the named domains and its weight outside them over
    the run, then a one-sentence verdict."""
    methods = comparison["methods"]
    width = max(len(name) for name in [*methods, "method"])
    ppl = f"avg val ppl on the {len(comparison['named'])} named domains"
    off = f"weight on the {len(comparison['decoys'])} others (mean over the run)"
    lines = [
        "each mix on a fresh proxy from the same seed:",
        f"  {'method':<{width}}  {ppl}  {off}",
    ]
    for name, m in methods.items():
        lines.append(
            f"  {name:<{width}}  {m['val_ppl']:>{len(ppl)}.1f}  {m['decoy_weight']:>{len(off)}.2f}"
        )
    return [*lines, mix_verdict(methods, comparison["learned"])]


def mix_verdict(methods: dict[str, dict[str, float]], learned: str) -> str:
    """One sentence: where the learned mix stands against every other method, in perplexity on the
    named domains (to one decimal, as printed) and in weight outside them."""
    mine = methods[learned]
    others = {name: m for name, m in methods.items() if name != learned}
    standings = []
    for name, m in others.items():
        gap = round(mine["val_ppl"] - m["val_ppl"], 1)
        where = "ahead of" if gap < 0 else "behind" if gap > 0 else "level with"
        standings.append(f"{where} {name} ({gap:+.1f} perplexity)")
    theirs = " and ".join(f"{name}'s {m['decoy_weight']:.2f}" for name, m in others.items())
    return (
        f"verdict: the {learned} is {' and '.join(standings)} on the named domains, with "
        f"{mine['decoy_weight']:.2f} of its weight on the others against {theirs} (one seed)."
    )
