"""The per-domain signals of docs/method.md: the agent's state vector and the gradient-alignment scores.

Both are pure functions of numbers the training step already has, so they can be tested against
brute-force computations and shared by the proxy env, the Ray Train workers and the baselines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

import numpy as np
import torch

from acodm_ray.config_train import EvalWeighting
from acodm_ray.named_targets import (  # noqa: F401  (re-exported: signals.resolve_named_targets, ...)
    EVIDENCE_WINDOW,
    SCORES,
    resolve_named_targets,
    resolve_score,
)
from acodm_ray.score_scale import RunningScale  # noqa: F401  (re-exported: signals.RunningScale)


def znorm_clip(x: torch.Tensor, clip: float = 3.0) -> torch.Tensor:
    """z-normalise across entries, then clip to [-clip, clip].

    Uses the unbiased std like the reference (`tensor.std()`); a group of fewer than two entries has
    no spread, so it maps to zeros instead of the reference's NaN.
    """
    x = x.to(torch.float64)
    if x.numel() < 2:
        return torch.zeros_like(x)
    z = (x - x.mean()) / (x.std() + 1e-8)
    return torch.clamp(z, -clip, clip)


def alignment_scores(
    domain_grads: torch.Tensor,
    sampled: torch.Tensor,
    score_clip: float = 999.0,
    z_clip: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-domain gradient-alignment scores from per-domain mean gradients `domain_grads` [K, P].

    s_i = sum_{j != i} <g_i, g_j> over the domains sampled in the step, divided by their mean
    gradient norm and clipped (the "raw" scores), then z-normalised across the sampled domains and
    clipped (the reward). A domain not sampled in the step has no gradient: its raw score and its
    reward are 0, i.e. exactly the sampled domains' mean after normalisation (neutral).
    """
    num_domains = domain_grads.shape[0]
    raw = torch.zeros(num_domains, dtype=torch.float64)
    reward = torch.zeros(num_domains, dtype=torch.float64)
    idx = torch.nonzero(sampled, as_tuple=False).flatten()
    if idx.numel() > 0:
        g = domain_grads[idx].to(torch.float64)
        gram = g @ g.T
        s = gram.sum(dim=1) - torch.diagonal(gram)
        s = s / (g.norm(dim=1).mean() + 1e-6)
        s = torch.clamp(s, -score_clip, score_clip)
        raw[idx] = s
        reward[idx] = znorm_clip(s, z_clip)
    return raw.numpy(), reward.numpy()


def total_alignment(domain_grads: torch.Tensor, sampled: torch.Tensor) -> np.ndarray:
    """s_i = <g_i, sum_j g_j> over the domains sampled in the step, self term included; NaN where a
    domain was not sampled (it has no gradient, so no score: masked, not 0).

    Why the self term: the step moves the LM by -lr * sum_j w_j g_j, so to first order it lowers
    the SUM of the domain losses (K times the average the benchmark reports) by
    lr * sum_i w_i <g_i, sum_j g_j> = lr * sum_i w_i s_i: the scalar reward r = sum_i w_i s_i is the
    loss decrease the step buys. The paper's s_i drops <g_i, g_i> and then z-scores, which makes
    sum_i s_i = 0 every step."""
    return _sampled_alignment(domain_grads, sampled, self_term=True)


def cross_alignment(domain_grads: torch.Tensor, sampled: torch.Tensor) -> np.ndarray:
    """s_i = <g_i, sum_{j != i} g_j> over the domains sampled in the step: `total_alignment` without the
    self term, NaN where a domain was not sampled.

    Why drop <g_i, g_i>: g_i is a mean over the n_i micro-batches of domain i in the step, so
    E|g_i|^2 = |E g_i|^2 + tr Cov / n_i. With one or two micro-batches per domain the noise term is
    a large part of it (benchmarks/score_noise.py on the bench proxy: a domain's total score falls
    by more than the domains' mean scores differ when its micro-batches go from 1 to 2), so the self
    term ranks domains largely by how noisy their gradients are, and a domain's score falls as its
    weight rises.
    The cross terms pair independent micro-batches: unbiased, and not zero-sum like the paper's
    z-scored version. What is lost is the true |E g_i|^2, the step's benefit to domain i alone."""
    return _sampled_alignment(domain_grads, sampled, self_term=False)


def eval_alignment(
    domain_grads: torch.Tensor, sampled: torch.Tensor, reference: torch.Tensor
) -> np.ndarray:
    """s_i = <g_i, g_ref> over the domains sampled in the step, NaN where a domain was not sampled;
    g_ref [P] is the gradient of a reference micro-batch drawn apart from the step's, its rows from
    the evaluation domains (`train.eval_domains`, all domains when empty), one domain a row, uniformly.

    Why: what a mix is for is the loss on the evaluation domains, here their mean L_E. The step
    moves the LM by -lr * sum_i w_i g_i, so to first order it lowers L_E by
    lr * sum_i w_i <g_i, grad L_E>: with E g_ref = grad L_E (each row's domain uniform over E) and
    g_ref independent of the g_i, E s_i is exactly domain i's share of that decrease. Unlike
    `total_alignment` no self term carries micro-batch noise, and unlike both `total` and `cross` a
    domain is paid for helping the domains that are evaluated, not for agreeing with whatever the
    step sampled (a decoy domain that the mix samples counts in the others' scores; here it does not)."""
    out = np.full(domain_grads.shape[0], np.nan)
    idx = torch.nonzero(sampled, as_tuple=False).flatten()
    if idx.numel() > 0:
        g = domain_grads[idx].to(torch.float64)
        out[idx.numpy()] = (g @ reference.to(torch.float64)).numpy()
    return out


EVAL_WEIGHTINGS = get_args(EvalWeighting)  # signals.eval_weighting: what g_ref follows


def perplexity_weights(last_losses: np.ndarray, eval_indices: list[int]) -> np.ndarray:
    """[K] c_e = exp(L_e) / mean_{e' in E} exp(L_e') on the evaluation domains E, 0 elsewhere, from the
    last training loss L_e of each domain (NaN = not seen yet: it takes the mean of the seen ones'
    c; all 1 while none is seen).

    Why: the benchmark's metric is the mean of the per-domain perplexities, M = mean_e exp(L_e), so
    grad M = mean_e exp(L_e) grad L_e: a reference micro-batch whose rows (domains uniform over E)
    have their losses weighted by c_e has E g_ref proportional to grad M, and the "eval" score then
    measures each domain's share of the step's first-order decrease of M itself. Unweighted, a
    domain at perplexity 200 counts as much as one at 27, while in M it counts 7 times as much."""
    out = np.zeros(len(last_losses))
    losses = np.asarray(last_losses, dtype=np.float64)[eval_indices]
    seen = np.isfinite(losses)
    if not seen.any():
        out[eval_indices] = 1.0
        return out
    ppl = np.exp(losses[seen] - losses[seen].max())  # relative perplexities: exp cannot overflow
    c = np.full(len(losses), ppl.mean())
    c[seen] = ppl
    out[eval_indices] = c / c.mean()
    return out


def adam_preconditioner(
    exp_avg_sq: Sequence[torch.Tensor], step: int, beta2: float, eps: float
) -> torch.Tensor:
    """[P] flat P = 1 / (sqrt(v_hat) + eps), v_hat = exp_avg_sq / (1 - beta2^step): the per-coordinate
    factor by which AdamW turns a gradient into a step (momentum aside), over the given matrices.

    Why: an AdamW step moves the LM by -lr * P m, not -lr * g, so to first order the step made of
    domain i's gradient lowers the evaluated loss by lr <P g_i, grad L_E> = lr <g_i, P grad L_E>.
    In the plain inner product the coordinates with large gradients (what every domain shares:
    frequent tokens) outweigh the rest; AdamW moves every coordinate at about the same rate, so the
    domain-specific coordinates count in the step as much as the shared ones."""
    correction = 1.0 - beta2 ** max(int(step), 1)
    return torch.cat(
        [1.0 / ((v.detach().double() / correction).sqrt() + eps).flatten() for v in exp_avg_sq]
    )


def _sampled_alignment(
    domain_grads: torch.Tensor, sampled: torch.Tensor, self_term: bool
) -> np.ndarray:
    """<g_i, sum_j g_j> (minus <g_i, g_i> without `self_term`) over the sampled domains, in float64;
    NaN where a domain was not sampled."""
    out = np.full(domain_grads.shape[0], np.nan)
    idx = torch.nonzero(sampled, as_tuple=False).flatten()
    if idx.numel() > 0:
        g = domain_grads[idx].to(torch.float64)
        s = g @ g.sum(dim=0)
        out[idx.numpy()] = (s if self_term else s - (g * g).sum(dim=1)).numpy()
    return out


def loss_decrease_scores(
    previous: np.ndarray, losses: np.ndarray, z_clip: float = 3.0
) -> np.ndarray:
    """The `reward: loss` ablation's per-domain reward: how much each domain's mean training loss fell
    since the last step that sampled it, z-normalised across the domains that have both values and
    clipped, like the alignment reward. A domain not sampled now, or never before, gets 0 (neutral).

    `previous` and `losses` hold NaN where a domain has no value."""
    previous, losses = np.asarray(previous, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    out = np.zeros_like(losses)
    both = np.isfinite(previous) & np.isfinite(losses)
    if both.any():
        out[both] = znorm_clip(torch.from_numpy(previous[both] - losses[both]), z_clip).numpy()
    return out


def domain_means(sums: torch.Tensor | np.ndarray, counts: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-domain mean of a step's summed values (loss sums / counts); NaN where a domain has no
    count, i.e. was not sampled (the mixers read NaN as "no observation", never as 0)."""
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    out = np.full(sums.shape, np.nan)
    seen = counts > 0
    out[seen] = sums[seen] / counts[seen]
    return out


def step_scores(
    mean_grads: torch.Tensor,
    sampled: torch.Tensor,
    score: str,
    score_clip: float,
    z_clip: float,
    scale: RunningScale,
    reference: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(the paper's raw alignment scores, the reward vector under `signals.score`) from per-domain
    mean gradients [K, P] (and, for "eval", the reference gradient [P]). The raw scores are the
    paper's whatever the reward, so the alignment mixer reads the same signal either way; "total",
    "cross" and "eval" advance the running `scale`."""
    raw, z = alignment_scores(mean_grads, sampled, score_clip, z_clip)
    if score == "paper":
        return raw, z
    if score == "cross":
        return raw, scale(cross_alignment(mean_grads, sampled))
    if score == "eval":
        if reference is None:
            raise ValueError('signals.score "eval" needs the reference gradient')
        return raw, scale(eval_alignment(mean_grads, sampled, reference))
    if score != "total":
        raise ValueError(f"signals.score {score!r} is not resolved (signals.resolve_score)")
    return raw, scale(total_alignment(mean_grads, sampled))


class TrackedWeights:
    """The state's weight features: the Frobenius norm of each tracked matrix and the norm of its
    change since the previous read (docs/method.md, state groups 4 and 5). Keeps one snapshot per
    matrix; `read()` returns both and moves the snapshots to the current weights."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = list(params)
        self.snapshots = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def read(self) -> tuple[np.ndarray, np.ndarray]:
        norms = np.array([float(p.norm()) for p in self.params])
        deltas = np.array([float((p - s).norm()) for p, s in zip(self.params, self.snapshots)])
        for p, s in zip(self.params, self.snapshots):
            s.copy_(p)
        return norms, deltas

    def state_dict(self) -> list[torch.Tensor]:
        return [s.clone() for s in self.snapshots]

    def load_state_dict(self, snapshots: list[torch.Tensor]) -> None:
        if len(snapshots) != len(self.snapshots):
            raise ValueError(
                f"{len(snapshots)} weight snapshots saved, {len(self.snapshots)} matrices tracked"
            )
        for s, saved in zip(self.snapshots, snapshots):
            s.copy_(saved)


STATE_LAYOUT = [
    "loss",
    "loss_change",
    "counts",
    "weight_norm",
    "weight_change_norm",
    "progress",
]  # the groups, in order


def state_dim(num_domains: int, num_tracked: int) -> int:
    """3K + 2L + 1 (docs/method.md)."""
    return 3 * num_domains + 2 * num_tracked + 1


def make_state_spec(
    domains: list[str], tracked_names: list[str], progress_scale: float, z_clip: float
) -> dict:
    """What the state vector means; exported with a policy so that a run whose state means
    something else is refused (`mixers.actor.check_policy_matches`)."""
    return {
        "domains": list(domains),
        "num_tracked": len(tracked_names),
        "tracked_params": list(tracked_names),
        "dim": state_dim(len(domains), len(tracked_names)),
        "layout": list(STATE_LAYOUT),
        "progress_scale": progress_scale,
        "z_clip": z_clip,
    }


class StateTracker:
    """Builds the 3K + 2L + 1 state vector and remembers what its "change" features need.

    Per-domain loss of a domain not sampled in the step is carried forward from its last
    observation (so its change is 0); a domain never observed yet takes the mean of this step's
    observed losses, which is then carried forward like an observation.
    """

    def __init__(
        self, num_domains: int, num_tracked: int, progress_scale: float = 100.0, z_clip: float = 3.0
    ):
        self.num_domains = num_domains
        self.num_tracked = num_tracked
        self.progress_scale = progress_scale
        self.z_clip = z_clip
        self.last_losses = np.full(num_domains, np.nan)
        self.prev_losses: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return state_dim(self.num_domains, self.num_tracked)

    def fill_losses(self, losses: np.ndarray) -> np.ndarray:
        """Losses of this step with unsampled domains carried forward (NaN marks "unsampled")."""
        observed = np.isfinite(losses)
        filled = np.where(observed, losses, self.last_losses)
        unknown = ~np.isfinite(filled)
        if unknown.any():
            filled[unknown] = losses[observed].mean() if observed.any() else 0.0
        self.last_losses = filled
        return filled.copy()

    def build(
        self,
        losses: np.ndarray,
        counts: np.ndarray,
        norms: np.ndarray,
        delta_norms: np.ndarray,
        progress: float,
    ) -> np.ndarray:
        """State after a step: [loss, Δloss, counts, ‖W‖, ‖ΔW‖] z-normalised per group, + progress."""
        filled = self.fill_losses(np.asarray(losses, dtype=np.float64))
        delta = np.zeros_like(filled) if self.prev_losses is None else filled - self.prev_losses
        self.prev_losses = filled
        groups = [
            filled,
            delta,
            np.asarray(counts, dtype=np.float64),
            np.asarray(norms, dtype=np.float64),
            np.asarray(delta_norms, dtype=np.float64),
        ]
        parts = [znorm_clip(torch.from_numpy(g), self.z_clip).numpy() for g in groups]
        parts.append(np.array([progress * self.progress_scale]))
        return np.concatenate(parts).astype(np.float32)

    def initial(self) -> np.ndarray:
        """State before the first step: nothing observed yet, progress 0."""
        return np.zeros(self.dim, dtype=np.float32)

    def state_dict(self) -> dict:
        return {
            "last_losses": torch.from_numpy(self.last_losses.copy()),
            "prev_losses": None
            if self.prev_losses is None
            else torch.from_numpy(self.prev_losses.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        self.last_losses = state["last_losses"].numpy().copy()
        prev = state["prev_losses"]
        self.prev_losses = None if prev is None else prev.numpy().copy()
