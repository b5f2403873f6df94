"""The training step shared by the proxy env, the Ray Train workers and the baselines.

`LMTrainer.step(weights)` runs one optimizer step: it gives each micro-batch a domain and a weight
in the step's loss (`train.coverage`, see `acodm_ray.sampler`), accumulates gradients, clips,
steps AdamW with warm-up + cosine LR, and returns the per-domain signals of docs/method.md (losses,
counts, the effective mix, state vector, gradient-alignment scores).

Per-domain gradients cost no extra backward pass: after each micro-batch the accumulated `.grad`
of the few alignment matrices is read and the difference to the previous read, divided by the
micro-batch's loss weight, is that micro-batch's gradient (a micro-batch whose weight is ~0 gets
its gradient from `autograd.grad` on those matrices alone).

Scores (`signals.score`): "paper" = sum_{j != i} <g_i, g_j>, z-scored per step (sums to 0);
"total" = <g_i, sum_j g_j> divided by a running scale (`signals.RunningScale`), NaN where a domain
was not sampled; "cross" the same without the self term <g_i, g_i>; "eval" = <g_i, g_ref> / running scale, g_ref the
gradient (alignment matrices only, by `autograd.grad`) of one more micro-batch whose rows come from
the evaluation domains, drawn apart from the step's and not trained on. Distributed runs plug in a `Collective` that sums gradients and per-domain statistics
across workers; a single process uses the no-op default.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from acodm_ray.checkpoint import load_checkpoint, save_checkpoint  # noqa: F401  (re-exported)
from acodm_ray.collective import Collective
from acodm_ray.config import ExperimentConfig
from acodm_ray.errors import AcodmError
from acodm_ray.eval_reference import EvalReference, Reference
from acodm_ray.model import alignment_params, build_model, resolve_device, state_params
from acodm_ray.optim import build_optimizer, warmup_cosine
from acodm_ray.sampler import MixtureSampler, check_weights, effective_mix
from acodm_ray.signals import (
    RunningScale,
    StateTracker,
    TrackedWeights,
    domain_means,
    make_state_spec,
    step_scores,
)
from acodm_ray.step_signals import StepSignals

if TYPE_CHECKING:
    from acodm_ray.data.tokens import TokenizedCorpus


TINY_LOSS_WEIGHT = 1e-4  # below this a micro-batch's gradient is read with autograd.grad instead


class NonFiniteLossError(AcodmError, FloatingPointError):
    """The LM loss became NaN or infinite; the step's update was not applied."""


class LMTrainer:
    """One LM, its optimizer and sampler, and the signal bookkeeping: everything a step needs."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        corpus: TokenizedCorpus,
        seed: int | None = None,
        rank: int = 0,
        collective: Collective | None = None,
        compute_signals: bool = True,
        model: torch.nn.Module | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.cfg = cfg
        self.corpus = corpus
        self.domains = list(corpus.domains)
        self.seed = cfg.train.seed if seed is None else seed
        self.collective = collective or Collective()
        self.compute_signals = compute_signals
        self.device = (
            torch.device(device) if device is not None else resolve_device(cfg.train.device)
        )
        self.total_steps = cfg.train.steps
        self.model = (
            model or build_model(cfg.model, corpus.vocab_size, corpus.eos_id, self.seed)
        ).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.sampler = MixtureSampler(
            corpus.train,
            self.domains,
            cfg.train.seq_len,
            cfg.train.micro_batch_size,
            self.seed,
            rank,
        )
        self._check_corpus()
        self._track_signals()
        self.step_count = 0
        self.last_state = self.tracker.initial()

    # ------------------------------------------------------------------ setup helpers

    def _check_corpus(self) -> None:
        """Every validation split holds a sequence; `train.eval_domains` names domains we have."""
        need = self.cfg.train.seq_len + 1
        for domain in self.domains:
            n = len(self.corpus.validation[domain])
            if n < need:
                raise ValueError(
                    f"validation split of domain {domain!r} has {n} tokens, fewer than one sequence ({need})"
                )
        unknown = sorted(set(self.cfg.train.eval_domains) - set(self.domains))
        if unknown:
            raise ValueError(
                f"train.eval_domains names unknown domain(s) {unknown}; the corpus has {self.domains}"
            )

    def _track_signals(self) -> None:
        """What the signals read from the model: the alignment matrices (scores), the tracked weight
        matrices and the state tracker (state), the scores' running scale."""
        sig = self.cfg.signals
        self.align_params = [
            p for _, p in alignment_params(self.model, sig.alignment_layers, sig.param_suffix)
        ]
        tracked = state_params(self.model, sig.param_suffix, sig.state_layers)
        self.state_params = [p for _, p in tracked]
        self.state_names = [n for n, _ in tracked]
        self.tracker = StateTracker(
            len(self.domains), len(self.state_params), sig.progress_scale, sig.z_clip
        )
        self.tracked = TrackedWeights(self.state_params)
        self.score_scale = RunningScale(
            sig.score_scale_beta, sig.score_clip_total, sig.score_window
        )
        scored = self.cfg.train.eval_domains or self.domains
        self.eval_indices = [self.domains.index(d) for d in scored]  # "eval"'s reference rows
        self.reference = EvalReference(
            sig, self.sampler, self.eval_indices, self.align_params, self.optimizer, self.collective
        )

    @property
    def state_spec(self) -> dict[str, Any]:
        """What the state vector means; exported with a policy so a mismatch can be refused."""
        return make_state_spec(
            self.domains, self.state_names, self.cfg.signals.progress_scale, self.cfg.signals.z_clip
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.train.dtype == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _lr(self) -> float:
        t = self.cfg.train
        return warmup_cosine(self.step_count, t.warmup_steps, self.total_steps, t.lr, t.min_lr)

    def _loss(self, batch: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Next-token cross-entropy of [B, T + 1] windows."""
        logits = self.model(input_ids=batch[:, :-1]).logits.float()
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction=reduction
        )

    def _flat_align_grads(self) -> torch.Tensor:
        return torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p))
                .detach()
                .flatten()
                .to(torch.float32)
                for p in self.align_params
            ]
        )

    # ------------------------------------------------------------------ the step

    def step(self, weights: np.ndarray) -> StepSignals:
        """One optimizer step sampled with `weights`; returns the step's per-domain signals."""
        start = time.perf_counter()
        weights = check_weights(weights, self.domains)
        num_micro = self.cfg.train.grad_accum
        plan, loss_weights = self.sampler.allocate(weights, num_micro, self.cfg.train.coverage)
        K = len(self.domains)
        weighted_loss = torch.zeros(1, dtype=torch.float64)
        loss_sum = torch.zeros(K, dtype=torch.float64)
        mb_count = torch.zeros(K, dtype=torch.float64)
        num_align = sum(p.numel() for p in self.align_params)
        domain_grads = torch.zeros(K, num_align if self.compute_signals else 0, dtype=torch.float32)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.train()
        prev = torch.zeros(num_align) if self.compute_signals else None
        for d, lam in zip(plan, loss_weights):
            batch = self.sampler.batch(int(d)).to(self.device)
            with self._autocast():
                loss = self._loss(batch)
            if (
                self.compute_signals and lam < TINY_LOSS_WEIGHT
            ):  # the grad difference would be ~0 / ~0
                own = torch.autograd.grad(loss, self.align_params, retain_graph=True)
                domain_grads[d] += torch.cat([g.detach().flatten().float() for g in own]).cpu()
                (loss * float(lam)).backward()
                prev = self._flat_align_grads().cpu()
            else:
                (loss * float(lam)).backward()
                if self.compute_signals:
                    cur = self._flat_align_grads().cpu()
                    domain_grads[d] += (cur - prev) / float(
                        lam
                    )  # this micro-batch's mean-loss gradient
                    prev = cur
            loss_sum[d] += loss.detach().double().cpu()
            weighted_loss += float(lam) * loss.detach().double().cpu()
            mb_count[d] += 1
        effective = effective_mix(plan, loss_weights, K)
        reference = (
            self.reference.draw(self._loss, self._autocast, self.tracker.last_losses, self.device)
            if self.compute_signals and self.cfg.signals.score == "eval"
            else None
        )
        return self._finish_step(
            weights, loss_sum, mb_count, domain_grads, start, weighted_loss, effective, reference
        )

    def _finish_step(
        self,
        weights: np.ndarray,
        loss_sum: torch.Tensor,
        mb_count: torch.Tensor,
        domain_grads: torch.Tensor,
        start: float,
        weighted_loss: torch.Tensor,
        effective: np.ndarray,
        reference: Reference | None = None,
    ) -> StepSignals:
        world = self.collective.world_size
        self.collective.sum_(loss_sum)
        self.collective.sum_(weighted_loss)
        if self.compute_signals:
            self.collective.sum_(domain_grads)
        ref_grad = None if reference is None else self.reference.combined(reference)
        self._sync_grads()
        counts_mb = mb_count * world  # the plan is the same on every worker
        sampled = counts_mb > 0
        losses = domain_means(loss_sum, counts_mb)
        step_loss = (
            float(weighted_loss.sum()) / world
        )  # the loss the step optimised (mean over micro-batches for iid)
        finite = math.isfinite(step_loss)
        if reference is not None and reference.row_grads is not None and finite:  # "fair" only
            self.reference.measure(reference, self._flat_align_grads())
        lr, grad_norm = self._update(finite)
        if self.compute_signals and finite:
            mean_grads = domain_grads / counts_mb.clamp(min=1).unsqueeze(1).float()
            raw, scores = self._scores(mean_grads, sampled, ref_grad)
        else:
            raw = np.zeros(len(self.domains))
            scores = np.zeros(len(self.domains))
        self.step_count += 1
        state = self._state(
            losses if finite else np.full(len(self.domains), np.nan), counts_mb.numpy()
        )
        self.last_state = state
        seqs = counts_mb.numpy() * self.cfg.train.micro_batch_size
        return StepSignals(
            step=self.step_count,
            loss=step_loss,
            losses=losses,
            counts=seqs,
            scores=scores,
            raw_scores=raw,
            state=state,
            weights=weights,
            lr=lr,
            grad_norm=grad_norm,
            tokens=int(seqs.sum()) * self.cfg.train.seq_len,
            seconds=time.perf_counter() - start,
            finite=finite,
            effective=effective,
        )

    def _update(self, finite: bool) -> tuple[float, float]:
        """(lr, grad norm): the optimizer step at the scheduled LR, with clipping; skipped (grad norm
        NaN) when the loss was not finite, so the model and the checkpoints stay intact."""
        lr = self._lr()
        grad_norm = float("nan")
        if finite:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            )
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, grad_norm

    def _scores(
        self, mean_grads: torch.Tensor, sampled: torch.Tensor, reference: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(the paper's raw scores, the reward vector under `signals.score`). The raw scores are the
        paper's whatever the reward, so the alignment mixer reads the same signal either way."""
        sig = self.cfg.signals
        return step_scores(
            mean_grads, sampled, sig.score, sig.score_clip, sig.z_clip, self.score_scale, reference
        )

    def _sync_grads(self) -> None:
        """Average gradients across workers (no-op on one process)."""
        world = self.collective.world_size
        if world == 1:
            return
        for p in self.model.parameters():
            if p.grad is not None:
                self.collective.sum_(p.grad)
                p.grad.div_(world)

    def _state(self, losses: np.ndarray, counts: np.ndarray) -> np.ndarray:
        norms, deltas = self.tracked.read()
        progress = self.step_count / max(1, self.total_steps)
        return self.tracker.build(
            losses, counts * self.cfg.train.micro_batch_size, norms, deltas, progress
        )

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Per-domain validation perplexity on fixed windows, and their average (the paper's metric)."""
        self.model.eval()
        t = self.cfg.train
        result: dict[str, float] = {}
        for domain in self.domains:
            stream = self.corpus.validation[domain]
            n_windows = min(t.eval_batches * t.micro_batch_size, (len(stream) - 1) // t.seq_len)
            rows = stream.windows(np.arange(n_windows) * t.seq_len, t.seq_len + 1)
            total, count = 0.0, 0
            for chunk in np.array_split(rows, max(1, math.ceil(n_windows / t.micro_batch_size))):
                batch = torch.from_numpy(chunk.astype(np.int64)).to(self.device)
                with self._autocast():
                    total += float(self._loss(batch, reduction="sum"))
                count += batch[:, 1:].numel()
            sums = torch.tensor([total, float(count)], dtype=torch.float64)
            self.collective.sum_(sums)
            result[domain] = math.exp(min(50.0, float(sums[0] / sums[1])))
        scored = (
            self.cfg.train.eval_domains or self.domains
        )  # the average covers these (decoys left out)
        result["average"] = float(np.mean([result[d] for d in scored]))
        self.model.train()
        return result

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "tracker": self.tracker.state_dict(),
            "snapshots": self.tracked.state_dict(),
            "score_scale": self.score_scale.state_dict(),
            "target_progress": self.reference.progress.state_dict(),
            "last_state": torch.from_numpy(self.last_state.copy()),
            "step": self.step_count,
            "domains": list(self.domains),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["domains"]) != self.domains:
            raise ValueError(
                f"checkpoint was trained on domains {state['domains']}, this corpus has {self.domains}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.tracker.load_state_dict(state["tracker"])
        self.tracked.load_state_dict(state["snapshots"])
        self.last_state = state["last_state"].numpy().copy()
        self.step_count = int(state["step"])
        if "score_scale" in state:  # absent in checkpoints written before signals.score existed
            self.score_scale.load_state_dict(state["score_scale"])
        if "target_progress" in state:  # absent before signals.eval_weighting "fair"
            self.reference.progress.load_state_dict(state["target_progress"])
