"""Single-process pretraining with any mixer (`acodm pretrain`): the baselines' loop.

Each step: the mixer proposes weights from the current state, the trainer takes one step with
them, the mixer learns from the step's signals. Evaluations, metrics and checkpoints (model,
optimizer, sampler RNG, mixer, step) go to the run directory; `resume=True` continues exactly.
The run's lifecycle (run dir, config snapshot, tracking, summary) is `acodm_ray.run.Run`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from acodm_ray.checkpoint import load_checkpoint, save_checkpoint
from acodm_ray.config import ExperimentConfig
from acodm_ray.data.load import load_tokenized
from acodm_ray.loop import mixing_loop
from acodm_ray.metrics import MetricsWriter
from acodm_ray.mixers import Mixer, build_mixer
from acodm_ray.run import Run, due
from acodm_ray.train_step import LMTrainer, NonFiniteLossError

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def save_run_checkpoint(run_dir: Path, trainer: LMTrainer, mixer: Mixer) -> Path:
    return save_checkpoint(
        run_dir / CHECKPOINT, {"trainer": trainer.state_dict(), "mixer": mixer.state_dict()}
    )


def restore_run(run: Run, trainer: LMTrainer, mixer: Mixer) -> None:
    """Trainer and mixer as the last checkpoint left them, and no log record after its step."""
    state = load_checkpoint(run.dir / CHECKPOINT)
    trainer.load_state_dict(state["trainer"])
    mixer.load_state_dict(state["mixer"])
    run.rewind(trainer.step_count)
    log.info("resumed %s at step %d", run.dir, trainer.step_count)


def pretrain(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `cfg.model` for `cfg.train.steps` steps with mixer `cfg.mixer`; returns the summary.

    Every step and evaluation record also goes to the trackers of `cfg.tracking` (one MLflow / W&B
    run per run dir, continued on resume), with the model and the summary as artifacts."""
    with Run.start(cfg, run_dir, resume=resume, overwrite=overwrite) as run:
        tokens, tokenizer = load_tokenized(cfg)
        trainer = LMTrainer(cfg, tokens, compute_signals=True)
        mixer = build_mixer(cfg.mixer, tokens.domains, tokens.natural_proportions())
        if run.resume:
            restore_run(run, trainer, mixer)
        run.snapshot()
        last_eval = train(run, trainer, mixer, run.metrics(tokens.domains), progress)
        model_dir = save_model(run.dir, trainer, tokenizer)
        summary = pretrain_summary(trainer, mixer, last_eval, model_dir)
        return run.finish(summary, {"model": model_dir, "summary": run.summary_path})


def train(
    run: Run, trainer: LMTrainer, mixer: Mixer, writer: MetricsWriter, progress: bool
) -> dict[str, float]:
    """The loop: every step logged, evaluated and checkpointed when due; returns the last
    evaluation. A NaN loss stops it with the last checkpoint intact (the step was not applied)."""
    t, last_eval = run.cfg.train, {}
    desc = f"pretrain[{mixer.name}]"
    with tqdm(total=t.steps, initial=trainer.step_count, disable=not progress, desc=desc) as bar:
        try:
            for signals in mixing_loop(trainer, mixer, t.steps):
                writer.log_step(signals)
                if due(trainer.step_count, t.eval_every, t.steps):
                    last_eval = trainer.evaluate()
                    writer.log_eval(trainer.step_count, last_eval)
                    bar.set_postfix(avg_ppl=f"{last_eval['average']:.1f}")
                if due(trainer.step_count, t.checkpoint_every, t.steps):
                    save_run_checkpoint(run.dir, trainer, mixer)
                bar.update(1)
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"{err}; the last checkpoint in {run.dir} is intact") from err
    return last_eval


def save_model(run_dir: Path, trainer: LMTrainer, tokenizer: Any) -> Path:
    """The trained model as a Hugging Face model (save_pretrained + its tokenizer) in <run_dir>/model."""
    model_dir = run_dir / "model"
    trainer.model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def pretrain_summary(
    trainer: LMTrainer, mixer: Mixer, last_eval: dict[str, float], model_dir: Path
) -> dict[str, Any]:
    """summary.json: what trained, how far, how well, with which weights at the end."""
    domains = trainer.domains
    return {
        "mixer": mixer.name,
        "steps": trainer.step_count,
        "domains": domains,
        "final_val_ppl": last_eval,
        "final_weights": dict(zip(domains, map(float, mixer.weights(trainer.last_state)))),
        "model_dir": str(model_dir),
        "state_spec": trainer.state_spec,  # what the state meant (a policy exported from this run records it)
    }


def closing_lines(summary: dict[str, Any], run_dir: Path) -> tuple[list[str], list[str]]:
    """(lines for stdout, warnings for stderr) that end `acodm pretrain`."""
    ppl = summary["final_val_ppl"].get("average")
    return [
        f"done: {summary['steps']} steps, average validation perplexity {ppl:.2f}; run dir {run_dir}"
    ], []
