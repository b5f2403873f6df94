"""Single-process pretraining with any mixer (`acodm pretrain`): the baselines' loop.

Each step: the mixer proposes weights from the current state, the trainer takes one step with
them, the mixer learns from the step's signals. Evaluations, metrics and checkpoints (model,
optimizer, sampler RNG, mixer, step) go to the run directory; `resume=True` continues exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from acodm_ray.checkpoint import load_checkpoint, save_checkpoint
from acodm_ray.config import ExperimentConfig, to_dict
from acodm_ray.data.load import load_tokenized
from acodm_ray.loop import mixing_loop
from acodm_ray.metrics import MetricsWriter, trim_metrics
from acodm_ray.mixers import Mixer, build_mixer
from acodm_ray.rundir import prepare_run_dir, write_config, write_json
from acodm_ray.tracking import require_backends
from acodm_ray.train_step import LMTrainer, NonFiniteLossError

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def save_run_checkpoint(run_dir: Path, trainer: LMTrainer, mixer: Mixer) -> Path:
    return save_checkpoint(
        run_dir / CHECKPOINT, {"trainer": trainer.state_dict(), "mixer": mixer.state_dict()}
    )


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
    require_backends(cfg)  # a missing tracking package stops the run before anything is written
    run_dir = prepare_run_dir(run_dir, resume=resume, overwrite=overwrite)
    tokens, tokenizer = load_tokenized(cfg)
    trainer = LMTrainer(cfg, tokens, compute_signals=True)
    mixer = build_mixer(cfg.mixer, tokens.domains, tokens.natural_proportions())
    if resume:
        state = load_checkpoint(run_dir / CHECKPOINT)
        trainer.load_state_dict(state["trainer"])
        mixer.load_state_dict(state["mixer"])
        trim_metrics(run_dir, trainer.step_count)
        log.info("resumed %s at step %d", run_dir, trainer.step_count)
    else:
        write_config(run_dir, cfg)
    writer = MetricsWriter(
        run_dir, tokens.domains, tracking=cfg.tracking, params=to_dict(cfg), resume=resume
    )
    t = cfg.train
    last_eval: dict[str, float] = {}
    bar = tqdm(
        total=t.steps,
        initial=trainer.step_count,
        disable=not progress,
        desc=f"pretrain[{mixer.name}]",
    )
    try:
        for signals in mixing_loop(trainer, mixer, t.steps):
            writer.log_step(signals)
            if trainer.step_count % t.eval_every == 0 or trainer.step_count == t.steps:
                last_eval = trainer.evaluate()
                writer.log_eval(trainer.step_count, last_eval)
                bar.set_postfix(avg_ppl=f"{last_eval['average']:.1f}")
            if trainer.step_count % t.checkpoint_every == 0 or trainer.step_count == t.steps:
                save_run_checkpoint(run_dir, trainer, mixer)
            bar.update(1)
        bar.close()
        model_dir = run_dir / "model"
        trainer.model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    except NonFiniteLossError as err:
        writer.close("FAILED")
        raise NonFiniteLossError(f"{err}; the last checkpoint in {run_dir} is intact") from err
    except BaseException:
        writer.close("FAILED")
        raise
    finally:
        bar.close()
    summary = {
        "mixer": mixer.name,
        "steps": trainer.step_count,
        "domains": tokens.domains,
        "final_val_ppl": last_eval,
        "final_weights": dict(zip(tokens.domains, map(float, mixer.weights(trainer.last_state)))),
        "model_dir": str(model_dir),
        "state_spec": trainer.state_spec,  # what the state meant (a policy exported from this run records it)
    }
    write_json(run_dir / "summary.json", summary)
    writer.tracker.log_artifacts({"model": model_dir, "summary": run_dir / "summary.json"})
    writer.close()
    return summary
