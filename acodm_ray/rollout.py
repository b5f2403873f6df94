"""Run a proxy with an exported policy and with ODM from the same seed, side by side.

Answers "did the agent learn something other than ODM?": the two weight trajectories, their mean
absolute difference per step, and the validation perplexity each reaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from acodm_ray.config import ExperimentConfig
from acodm_ray.data.load import load_tokenized
from acodm_ray.data.tokens import TokenizedCorpus
from acodm_ray.loop import mixing_loop
from acodm_ray.mixers.actor import ActorMixer
from acodm_ray.mixers.base import Mixer
from acodm_ray.mixers.odm import ODMMixer
from acodm_ray.plots import plot_weight_trajectories
from acodm_ray.train_step import LMTrainer


def weight_trajectory(
    cfg: ExperimentConfig,
    tokens: TokenizedCorpus,
    mixer: Mixer,
    seed: int,
    label: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a fresh proxy with `mixer`; the weights of every step and the final validation ppl."""
    trainer = LMTrainer(cfg, tokens, seed=seed)
    weights = []
    with tqdm(
        total=cfg.train.steps,
        desc=f"rollout: {label or mixer.name} on a fresh proxy",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    ) as bar:
        for s in mixing_loop(trainer, mixer, cfg.train.steps):
            weights.append(s.weights)
            bar.update(1)
        bar.set_postfix_str("evaluating")
        val_ppl = trainer.evaluate()
        bar.set_postfix_str(f"average validation perplexity {val_ppl['average']:.1f}")
    return {"weights": np.stack(weights), "val_ppl": val_ppl}


def compare_with_odm(
    policy_dir: str | Path, cfg: ExperimentConfig, out_dir: str | Path, label: str = "AC-ODM policy"
) -> dict[str, Any]:
    """Roll out the policy (any exported kind) and ODM on the proxy config; write
    weights_policy_vs_odm.png, the policy's curve named `label`."""
    tokens, _ = load_tokenized(cfg)
    seed = cfg.train.seed
    probe = LMTrainer(cfg, tokens, seed=seed)
    policy = weight_trajectory(
        cfg, tokens, ActorMixer(policy_dir, tokens.domains, probe.tracker.dim), seed, label
    )
    odm_mixer = ODMMixer(
        tokens.domains, tokens.natural_proportions(), cfg.mixer.odm_variant, cfg.mixer.odm_alpha
    )
    odm = weight_trajectory(cfg, tokens, odm_mixer, seed, "ODM")
    diff = (
        np.abs(policy["weights"] - odm["weights"]).sum(axis=1) / 2
    )  # total-variation distance per step
    png = plot_weight_trajectories(
        {label: policy["weights"], "ODM": odm["weights"]},
        tokens.domains,
        Path(out_dir) / "weights_policy_vs_odm.png",
        title="proxy rollout from the same seed",
    )
    return {
        "mean_tv_distance_to_odm": float(diff.mean()),
        "max_tv_distance_to_odm": float(diff.max()),
        "policy_mean_weights": dict(
            zip(tokens.domains, map(float, policy["weights"].mean(axis=0)))
        ),
        "policy_final_weights": dict(zip(tokens.domains, map(float, policy["weights"][-1]))),
        "odm_mean_weights": dict(zip(tokens.domains, map(float, odm["weights"].mean(axis=0)))),
        "odm_final_weights": dict(zip(tokens.domains, map(float, odm["weights"][-1]))),
        "policy_val_ppl": policy["val_ppl"],
        "odm_val_ppl": odm["val_ppl"],
        "plot": str(png),
    }
