"""Run a proxy with an exported policy and with ODM from the same seed, side by side.

Answers "did the agent learn something other than ODM?": the two weight trajectories, their mean
absolute difference per step, and the validation perplexity each reaches. Given the domains a mix
should avoid (the decoys: with named targets, those outside `train.eval_domains`), it also runs
uniform from the same seed and answers "did the learned mix do better than not mixing?": each
method's average validation perplexity on the named domains and its weight on the decoys.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from acodm_ray.mixers.static import uniform_mixer
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
    policy_dir: str | Path,
    cfg: ExperimentConfig,
    out_dir: str | Path,
    label: str = "AC-ODM policy",
    decoys: Sequence[str] = (),
) -> dict[str, Any]:
    """Roll out the policy (any exported kind) and ODM on the proxy config; write
    weights_policy_vs_odm.png, the policy's curve named `label`. With `decoys`, uniform too, and
    the three side by side under "comparison" (`mix_comparison`)."""
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
    result = {
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
    if decoys:
        uniform = weight_trajectory(cfg, tokens, uniform_mixer(tokens.domains), seed, "uniform")
        runs = {label: policy, "ODM": odm, "uniform": uniform}
        named = cfg.train.eval_domains or tokens.domains  # what "average" covers
        result["comparison"] = {
            "learned": label,
            **mix_comparison(runs, tokens.domains, decoys, named),
        }
    return result


def decoy_domains(domains: Sequence[str], named: Sequence[str]) -> list[str]:
    """With named targets (`train.eval_domains`), the other domains: what the mix should avoid (in
    the demo, the decoys); none without named targets."""
    return [d for d in domains if named and d not in named]


def decoy_weight(weights: np.ndarray, domains: Sequence[str], decoys: Sequence[str]) -> float:
    """The weight a trajectory (steps x domains) put on `decoys`, summed over them and averaged over
    the steps: the share of the run's sampling that went where it should not."""
    columns = [list(domains).index(d) for d in decoys]
    return float(weights[:, columns].sum(axis=1).mean())


def mix_comparison(
    runs: dict[str, dict[str, Any]],
    domains: Sequence[str],
    decoys: Sequence[str],
    named: Sequence[str],
) -> dict[str, Any]:
    """Each run (`weight_trajectory`'s output, by method) as its average validation perplexity on
    the named domains ("average" covers `train.eval_domains`) and its weight on the decoys."""
    return {
        "named": list(named),
        "decoys": list(decoys),
        "methods": {
            name: {
                "val_ppl": float(run["val_ppl"]["average"]),
                "decoy_weight": decoy_weight(run["weights"], domains, decoys),
            }
            for name, run in runs.items()
        },
    }
