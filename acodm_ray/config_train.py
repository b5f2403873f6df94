"""The config sections of how a model trains and how its mix is chosen: `train`, `signals`, `mixer`,
`env` (acodm_ray/config.py puts them together). A `Literal` annotation is the one list of a field's
allowed values (code that needs them as a tuple takes `typing.get_args` of it: `sampler.COVERAGES`,
`signals.SCORES`, `mixers.MIXERS`); each field's docstring is its documentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Coverage = Literal["iid", "forced", "weighted"]
Device = Literal["auto", "cpu", "cuda"]
DType = Literal["float32", "bfloat16"]
Score = Literal["auto", "total", "cross", "eval", "paper"]
EvalWeighting = Literal["loss", "perplexity", "fair"]
Geometry = Literal["plain", "adam"]
MixerName = Literal["uniform", "natural", "file", "odm", "alignment"]
OdmVariant = Literal["smoothed_mean", "exp3"]
EnvReward = Literal["alignment", "loss"]


@dataclass
class TrainConfig:
    """Optimisation of the LM (proxy or target)."""

    steps: int = 100
    """Optimizer steps."""
    seq_len: int = 64
    """Tokens per training sequence."""
    micro_batch_size: int = 8
    """Sequences per micro-batch (and per worker)."""
    grad_accum: int = 8
    """Micro-batches per optimizer step; each micro-batch is one domain."""
    coverage: Coverage = "iid"
    """How the micro-batches of a step go to domains (acodm_ray/sampler.py): "iid" (each draws its
    domain from the weights), "forced" (one per domain, the rest i.i.d.: the reference code) or
    "weighted" (one per domain, the rest in proportion to the weights, each domain's micro-batches
    weighted so the step's gradient is exactly sum_i w_i g_i). "forced" and "weighted" need
    grad_accum >= the number of domains."""
    lr: float = 1e-3
    """Peak learning rate (linear warm-up, then cosine decay to min_lr)."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 10
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seed of the model's initialisation and of the sampler."""
    eval_every: int = 25
    """Steps between validation evaluations."""
    eval_batches: int = 4
    """Validation micro-batches per domain."""
    eval_domains: list[str] = field(default_factory=list)
    """Domains the average validation perplexity (and the "eval" score's reference gradient)
    covers; empty: all."""
    checkpoint_every: int = 50
    """Steps between checkpoints."""
    device: Device = "auto"
    """Where the model trains: "auto" is cuda when a GPU is visible, else cpu."""
    dtype: DType = "float32"
    """Training precision: "bfloat16" trains under autocast."""


@dataclass
class SignalConfig:
    """The per-domain signals of docs/method.md: state features and gradient-alignment scores."""

    param_suffix: str | None = None
    """Weight-name suffix of the tracked matrices (each block's MLP output); null: by model
    type."""
    alignment_layers: int = 3
    """Top-half layers whose gradients give the alignment scores."""
    state_layers: int | None = None
    """Tracked matrices in the state; null: every other layer. Fix it to the same number for a
    proxy and a target of different depth (policy transfer)."""
    progress_scale: float = 1.0
    """state[-1] = training progress x this scale; the reference's 100 drowns the other
    features."""
    score: Score = "auto"
    """The per-domain reward: "total" <g_i, sum_j g_j> / running scale (ours); "cross"
    <g_i, sum_{j!=i} g_j> / running scale (no self term: unbiased under micro-batch noise); "eval"
    <g_i, g_ref> / running scale, g_ref the gradient of one more micro-batch drawn from the
    evaluation domains (signals.eval_alignment); "paper" sum_{j!=i} <g_i, g_j>, z-scored; "auto"
    (the named-targets rule) "eval" when train.eval_domains names any domain, else "total"."""
    eval_weighting: EvalWeighting = "loss"
    """What the "eval" score's reference gradient follows: "loss" the evaluated domains' mean
    loss; "perplexity" each reference row's loss weighted by its domain's exp(last training loss)
    / their mean, so g_ref follows the gradient of the mean of the per-domain perplexities (the
    benchmark's metric); "fair" each row's loss weighted by 1 / its domain's measured per-step loss
    decrease under the mix, so g_ref follows the gradient of sum_e log(decrease_e) and no evaluated
    domain is starved for the ones most like the rest (acodm_ray/target_progress.py)."""
    geometry: Geometry = "plain"
    """In which geometry the "eval" score measures agreement: "plain" <g_i, g_ref>; "adam"
    <g_i, P g_ref>, P = 1 / (sqrt(v_hat) + eps) the optimizer's own per-coordinate step scale on
    the alignment matrices, so the score is domain i's first-order share of the decrease an AdamW
    step makes (signals.adam_preconditioner)."""
    score_scale_beta: float = 0.95
    """Decay of the running scale of the "total", "cross" and "eval" scores."""
    score_window: int | None = None
    """The reward is each domain's mean score over its last W scored steps; null: 8 with the
    "eval" score, else 1 (signals.resolve_named_targets)."""
    score_clip_total: float = 10.0
    """Clip of the running-scaled "total", "cross" and "eval" scores."""
    score_clip: float = 999.0
    """Clip of the norm-scaled alignment scores before z-normalisation ("paper")."""
    z_clip: float = 3.0
    """Clip of the z-normalised "paper" scores."""


@dataclass
class MixerConfig:
    """Which mixer chooses the domain weights, and its knobs."""

    name: MixerName = "odm"
    """The mixer: "uniform", "natural" (the corpus's token proportions), "file" (weights_file),
    "odm" (the ODM bandit on per-domain losses) or "alignment" (the gradient-alignment scores used
    greedily, DoGE's rule)."""
    weights_file: str | None = None
    """For "file": a YAML/JSON mapping domain -> weight."""
    odm_variant: OdmVariant = "smoothed_mean"
    """ODM's update: "smoothed_mean" (the default) or "exp3" (the textbook EXP3)."""
    odm_alpha: float = 0.5
    """ODM's smoothing: R_i <- alpha R_i + (1 - alpha) exp(L_i) ("smoothed_mean")."""
    alignment_mu: float = 1e-3
    """Alignment mixer (acodm_ray/mixers/alignment.py, DoGE's rule): step size lr_t / mu."""
    alignment_clip_min: float = -5.0
    """Alignment mixer: lower clip of the scores."""
    alignment_clip_max: float = 5.0
    """Alignment mixer: upper clip of the scores."""
    alignment_floor: float = 0.05
    """Alignment mixer: share of a uniform mix mixed in (no domain starves)."""


@dataclass
class EnvConfig:
    """The Gymnasium environment around proxy pretraining (envs/)."""

    steps_per_action: int = 1
    """Optimizer steps trained with one action (decide_every)."""
    action_epsilon: float = 1e-6
    """Weights = (a + eps) / sum(a + eps) for Box(0, 1) actions."""
    reward: EnvReward = "alignment"
    """The reward: "alignment" (the alignment scores, docs/method.md) or "loss" (ablation: the
    per-domain loss decrease)."""
