"""What the driver writes once a target run's training is done: the final model (from the final
checkpoint), the online agent's actor as an exported policy, the plots, summary.json and the
tracked run's artifacts (through the run's `Run.finish`), and the closing lines."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from acodm_ray.agent.networks import Actor
from acodm_ray.agent.policy_file import save_policy
from acodm_ray.checkpoint import load_checkpoint
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.errors import AcodmError
from acodm_ray.metrics import read_metrics
from acodm_ray.model import build_model
from acodm_ray.policy_server import MixerSpec
from acodm_ray.run import Run
from acodm_ray.target.worker import TRAINER_FILE

log = logging.getLogger("acodm_ray.target")


class TargetTrainingError(AcodmError, RuntimeError):
    """The Ray Train run failed (after its allowed restarts)."""


def finish_run(
    run: Run,
    checkpoint,
    tokens,
    tokenizer,
    spec: MixerSpec,
    state_spec: dict,
    server_desc: dict | None,
    seconds: float,
) -> dict[str, Any]:
    """Final model (save_pretrained + tokenizer), exported online actor, plots, summary.json."""
    cfg, domains = run.cfg, list(tokens.domains)
    payload = final_payload(checkpoint, cfg.train.steps)
    model_dir = save_final_model(cfg, payload, tokens, tokenizer, run.dir)
    summary: dict[str, Any] = {
        "mixer": payload.get("mixer_name"),
        "kind": spec.kind,
        "steps": int(payload["trainer"]["step"]),
        "domains": domains,
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
        summary.update(export_online_policy(cfg, spec, payload, domains, state_spec, run.dir))
    summary.update(final_records(run.dir, domains, server_desc, summary["mixer"] or spec.kind))
    artifacts = {
        "model": model_dir,
        "policy": run.dir / "policy" if spec.kind == "online" else None,
        "plots": summary.get("plots", []),
        "summary": run.summary_path,
    }
    return run.finish(summary, artifacts)


def final_payload(checkpoint, steps: int) -> dict[str, Any]:
    """trainer.pt of the run's final checkpoint, refused unless it is the last step's."""
    if checkpoint is None:
        raise TargetTrainingError("the run reported no checkpoint")
    with checkpoint.as_directory() as d:
        payload = load_checkpoint(Path(d) / TRAINER_FILE)
    step = int(payload["trainer"]["step"])
    if step != steps:
        raise TargetTrainingError(f"the last checkpoint is at step {step}, expected {steps}")
    return payload


def save_final_model(
    cfg: ExperimentConfig, payload: dict[str, Any], tokens, tokenizer, run_dir: Path
) -> Path:
    """The final model as a Hugging Face model (save_pretrained + tokenizer) in <run_dir>/model."""
    model = build_model(cfg.model, tokens.vocab_size, tokens.eos_id, cfg.train.seed)
    model.load_state_dict(payload["trainer"]["model"])
    model_dir = run_dir / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def export_online_policy(
    cfg: ExperimentConfig,
    spec: MixerSpec,
    payload: dict[str, Any],
    domains: list[str],
    state_spec: dict,
    run_dir: Path,
) -> dict[str, Any]:
    """Non-proxy mode: the actor the online agent learned on the target, as an exported policy in
    <run_dir>/policy, and how much it learned (the summary's "policy" and "agent")."""
    agent = payload["mixer"]["state"]
    actor = Actor.from_config(cfg.agent, spec.state_dim, len(spec.domains))
    actor.load_state_dict(agent["actor"])
    policy = save_policy(run_dir / "policy", actor, domains, state_spec, to_dict(cfg))
    return {
        "policy": str(policy),
        "agent": {
            "updates": int(agent["num_updates"]),
            "warmup_steps": int(agent["warmup_steps"]),
            "transitions": int(agent["steps_seen"]),
        },
    }


def final_records(
    run_dir: Path, domains: list[str], server_desc: dict | None, label: str
) -> dict[str, Any]:
    """From the run's records: the last weights, the last evaluation, the server's own account and
    the plots (a convenience: a plot that fails is a warning, never a failed run)."""
    steps, evals = read_metrics(run_dir)
    out: dict[str, Any] = {}
    if steps:
        out["final_weights"] = {d: steps[-1][f"weight/{d}"] for d in domains}
    if evals:
        out["final_val_ppl"] = {
            k.split("/", 1)[1]: v for k, v in evals[-1].items() if k.startswith("val_ppl/")
        }
    if server_desc is not None:
        out["server"] = {
            k: server_desc[k]
            for k in ("mixer", "kind", "num_weights_calls", "num_updates", "max_rss_mb")
        }
    try:
        out["plots"] = _plots(run_dir, steps, evals, domains, label)
    except Exception as err:  # plots are a convenience; never fail a finished run on them
        log.warning("plots failed: %s", err)
    return out


def _plots(
    run_dir: Path, steps: list[dict], evals: list[dict], domains: list[str], label: str
) -> list[str]:
    # lazy: matplotlib; every Ray Train worker imports this package and never plots
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
