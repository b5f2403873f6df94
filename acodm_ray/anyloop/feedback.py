"""MixingFeedback: what every mixer needs, computed from an ordinary training loop.

Per micro-batch, `loss(logits, batch)` returns the usual next-token loss and records, by the
`domain` field of each example, its summed token loss and token count (and, for the mixers that
learn from gradient alignment, the per-domain gradients of the alignment layers: `DomainGradients`).
After each optimizer step, `step()` turns the step's records into the same `StepSignals` the Ray
path produces -- per-domain mean loss, sequences per domain, the tracked weight matrices' norms and
their change, progress, the alignment scores -- lets the mixer learn from them, asks it for the
next weights and publishes them to the `MixingDataset`.

Why one function per concept here too: the state vector (`signals.StateTracker`), the weight
features (`signals.TrackedWeights`), the scores (`signals.step_scores`), the per-domain means
(`signals.domain_means`), the tracked and alignment matrices (`model.state_params`,
`model.alignment_params`) and the mixers (`policy_server.build_server_mixer`) are the ones the Ray
Train target uses, so an exported policy reads the same state in both.

Distributed: the per-domain sums are summed over ranks, only rank 0's mixer decides, and the
weights are broadcast, so every rank trains on the same mix (`acodm_ray.collective`). A feedback
built before torch.distributed's process group is up -- a Trainer script builds it before the
TrainingArguments start the group -- picks the group up when it is there (`connect`, which the
MixingCallback calls when training begins, and every `step`), not left deciding alone on each rank.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acodm_ray.agent.config import AgentConfig
from acodm_ray.agent.policy_file import save_policy
from acodm_ray.anyloop.dataset import MixingDataset
from acodm_ray.anyloop.domain_grads import DomainGradients
from acodm_ray.anyloop.domain_sums import DomainSums
from acodm_ray.anyloop.mixer import ONLINE, build_loop_mixer, needs_scores
from acodm_ray.anyloop.reference import ReferenceGradient, check_loop_eval_settings
from acodm_ray.anyloop.token_loss import IGNORE_INDEX, token_losses  # noqa: F401  (re-exported)
from acodm_ray.checkpoint import load_checkpoint, save_checkpoint
from acodm_ray.collective import LocalCollective, TorchCollective, default_collective
from acodm_ray.config import MixerConfig, SignalConfig
from acodm_ray.mixers.base import Mixer
from acodm_ray.model import alignment_params, state_params
from acodm_ray.signals import (
    RunningScale,
    StateTracker,
    TrackedWeights,
    domain_means,
    make_state_spec,
    resolve_named_targets,
    step_scores,
)
from acodm_ray.step_signals import StepSignals

log = logging.getLogger(__name__)

STATE_FORMAT = 1


def _loop_signals(
    signals: SignalConfig | None, agent: AgentConfig | None, named: list[str], domains: list[str]
) -> tuple[SignalConfig, AgentConfig]:
    """The signal and agent settings of a loop of your own (defaults: `SignalConfig()`'s and
    `AgentConfig()`'s), with "auto" resolved by the named-targets rule: `eval_domains` named ->
    the "eval" reward (signals.resolve_named_targets)."""
    if set(named) - set(domains):
        raise ValueError(f"eval_domains {named} are not all among {domains}")
    sig = check_loop_eval_settings(signals or SignalConfig())
    return resolve_named_targets(sig, agent or AgentConfig(), named)


class MixingFeedback:
    """Drives a `MixingDataset` from a training loop's own losses (module docstring).

    `mixer`: a name of `LOOP_MIXERS` (None: `mixer_config.name`, "odm" by default) or a `Mixer`;
    `policy`: an exported policy directory instead. `signals` says which matrices the state tracks
    and how scores are computed (a policy must have been trained with the same layout); `optimizer`
    (or `step(lr=...)`) gives the learning rate the alignment mixer steps by; `collective` defaults
    to torch.distributed's process group once one is up (`connect`); `eval_domains` (what you
    evaluate on) makes `signals.score` "auto" the "eval" reward (anyloop/reference.py). Create it
    before the loop iterates the dataset: it publishes the initial weights (DataLoaders copy it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: MixingDataset,
        total_steps: int,
        mixer: str | Mixer | None = None,
        policy: str | Path | None = None,
        signals: SignalConfig | None = None,
        mixer_config: MixerConfig | None = None,
        agent: AgentConfig | None = None,
        seed: int = 0,
        optimizer: torch.optim.Optimizer | None = None,
        collective: LocalCollective | TorchCollective | None = None,
        eval_domains: Sequence[str] | None = None,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.model, self.dataset, self.optimizer = model, dataset, optimizer
        self.domains = list(dataset.domains)
        named = list(eval_domains or [])
        self.sig, agent = _loop_signals(signals, agent, named, self.domains)
        self.total_steps = int(total_steps)
        self._track_state(model)
        self._device = next(model.parameters()).device
        self._given_collective = collective is not None
        self.collective = collective or default_collective(self._device)
        self.mixer = build_loop_mixer(
            mixer,
            policy,
            self.domains,
            dataset.natural_proportions(),
            self.state_spec,
            self.total_steps,
            mixer_config,
            agent,
            seed,
        )
        self.grads = self.reference = None
        if needs_scores(self.mixer):
            align = alignment_params(model, self.sig.alignment_layers, self.sig.param_suffix)
            self.grads = DomainGradients(model, align, len(self.domains))
            if self.sig.score == "eval":  # the reference rows: of the named domains (or all)
                evaluated = [self.domains.index(d) for d in named or self.domains]
                params, rows = [p for _, p in align], dataset.batch_size
                self.reference = ReferenceGradient(model, dataset, evaluated, params, rows, seed)
        self.step_count = 0
        self.last_state = self.tracker.initial()
        self.last_signals: StepSignals | None = None
        dataset.attach(self._decide(lambda: self.mixer.weights(self.last_state)))
        # as published (renormalised): what the dataset draws with
        self.current = dataset.history[-1].copy()
        self._pending_domain: torch.Tensor | None = None
        self._hook = model.register_forward_pre_hook(self._take_domain, with_kwargs=True)
        # the step's records, micro-batch by micro-batch
        self.records = DomainSums(len(self.domains))
        self._reset()

    def _track_state(self, model: torch.nn.Module) -> None:
        """The state's inputs, as `LMTrainer` builds them: the tracked weight matrices, the state
        tracker and the running scale of the scores."""
        sig = self.sig
        tracked = state_params(model, sig.param_suffix, sig.state_layers)
        self.tracked = TrackedWeights([p for _, p in tracked])
        self.state_spec = make_state_spec(
            self.domains, [n for n, _ in tracked], sig.progress_scale, sig.z_clip
        )
        self.tracker = StateTracker(len(self.domains), len(tracked), sig.progress_scale, sig.z_clip)
        self.scale = RunningScale(sig.score_scale_beta, sig.score_clip_total, sig.score_window)

    @property
    def rank(self) -> int:
        return int(getattr(self.collective, "rank", 0))

    def connect(self) -> None:
        """Use torch.distributed's process group if it came up after this feedback was built (and no
        collective was given), and make every rank start from rank 0's initial weights. Call it on
        every rank before the loop iterates the dataset (the MixingCallback does, at train begin);
        `step` picks the group up by itself, without re-sending the initial weights."""
        self._connect()
        if self.step_count == 0 and self.collective.world_size > 1:
            # every rank publishes the same bits (publishing renormalises: skipping it on the ranks
            # whose weights already were rank 0's would leave their last digit different)
            self.dataset.attach(self._decide(lambda: self.current))
            self.current = self.dataset.history[-1].copy()

    def _connect(self) -> None:
        if not self._given_collective and isinstance(self.collective, LocalCollective):
            self.collective = default_collective(self._device)

    # ------------------------------------------------------------------ per micro-batch

    def _take_domain(
        self, module: torch.nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        """`model(**batch)` works: the `domain` field is taken out before the model sees it."""
        if "domain" in kwargs:
            kwargs = dict(kwargs)
            self._pending_domain = kwargs.pop("domain")
            return args, kwargs
        return None

    def _reset(self) -> None:
        self.records.clear()
        self._t0 = time.perf_counter()

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor | Mapping[str, Any],
        domain: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The micro-batch's next-token loss (summed over tokens, divided by `num_items_in_batch`
        when given -- the Hugging Face Trainer's gradient-accumulation-exact loss -- else the mean),
        with its per-domain records. `labels` may be the batch itself (then its `domain` is used)."""
        if isinstance(labels, Mapping):
            domain = labels.get("domain") if domain is None else domain
            labels = labels["labels"]
        if domain is None:
            domain, self._pending_domain = self._pending_domain, None
        if domain is None:
            raise ValueError(
                "no `domain` for this batch: pass the MixingDataset's batch (or its 'domain' field)"
            )
        domain = torch.as_tensor(domain, device=logits.device).reshape(-1)
        if domain.numel() != logits.shape[0]:
            raise ValueError(
                f"{domain.numel()} domain labels for a batch of {logits.shape[0]} examples"
            )
        sums, counts = token_losses(logits, labels)
        denominator = (
            counts.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        )
        loss = sums.sum() / denominator
        if (
            torch.is_grad_enabled() and loss.requires_grad
        ):  # a training forward (evaluation is not recorded)
            self.records.add(domain, sums.detach(), counts)
            if self.grads is not None:
                self.grads.begin(loss, domain, denominator)
        return loss

    def compute_loss(
        self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """The Hugging Face Trainer's `compute_loss_func` (the `domain` came in through the model's
        forward, taken out by the pre-hook)."""
        logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
        return self.loss(logits, labels, num_items_in_batch=num_items_in_batch)

    # ------------------------------------------------------------------ per optimizer step

    def _decide(self, choose) -> np.ndarray:
        """Rank 0's choice, broadcast: every rank trains on the same mix."""
        K = len(self.domains)
        buf = torch.zeros(K, dtype=torch.float64)
        if self.rank == 0:
            buf[:] = torch.from_numpy(np.asarray(choose(), dtype=np.float64))
        self.collective.broadcast_(buf, 0)
        return buf.numpy().copy()

    def _lr(self, lr: float | None) -> float:
        if lr is None and self.optimizer is not None:
            lr = self.optimizer.param_groups[0]["lr"]
        if lr is None:
            if self.mixer.name == "alignment":
                raise ValueError(
                    "the alignment mixer steps by the learning rate: pass optimizer= to MixingFeedback "
                    "or lr= to step()"
                )
            return float("nan")
        return float(lr)

    def step(self, lr: float | None = None) -> StepSignals:
        """After an optimizer step: the step's signals, the mixer's update and the next weights
        (published to the dataset). Call it on every rank. `signals.extra` holds this rank's own
        share of the sums: `rank_loss_sums`, `rank_tokens`, `rank_counts` (per domain)."""
        self._connect()
        if not self.records.recorded and self.collective.world_size == 1:
            raise RuntimeError(
                f"no per-example losses were recorded in step {self.step_count + 1}: compute every "
                "micro-batch's loss with feedback.loss(...) (Trainer: "
                "compute_loss_func=feedback.compute_loss)"
            )
        (loss_sum, tokens, seqs), own = self.records.summed(self.collective)
        losses = domain_means(loss_sum, tokens)
        sampled = tokens > 0
        finite = bool(sampled.any()) and bool(np.isfinite(losses[sampled.numpy()]).all())
        self.step_count += 1
        norms, deltas = self.tracked.read()
        state = self.tracker.build(
            losses if finite else np.full(len(self.domains), np.nan),
            seqs.numpy(),
            norms,
            deltas,
            self.step_count / self.total_steps,
        )
        raw, scores = self._scores(tokens, sampled, finite)
        signals = StepSignals(
            step=self.step_count,
            loss=float(loss_sum.sum() / tokens.sum().clamp(min=1)),
            losses=losses,
            counts=seqs.numpy(),
            scores=scores,
            raw_scores=raw,
            state=state,
            weights=self.current.copy(),
            lr=self._lr(lr),
            grad_norm=float("nan"),
            tokens=int(tokens.sum()),
            seconds=time.perf_counter() - self._t0,
            finite=finite,
            effective=(seqs / seqs.sum().clamp(min=1)).numpy(),
            extra={"rank": self.rank, **self._rank_share(own)},
        )
        self.last_state, self.last_signals = state, signals
        if not finite:
            log.warning(
                "step %d: loss is not finite (%s); the mixer keeps its weights",
                self.step_count,
                losses,
            )
        self.current = self.dataset.publish(self._decide(lambda: self._next(signals))).copy()
        self._reset()
        return signals

    @staticmethod
    def _rank_share(own: np.ndarray) -> dict[str, np.ndarray]:
        return {"rank_loss_sums": own[0], "rank_tokens": own[1], "rank_counts": own[2]}

    def _scores(
        self, tokens: torch.Tensor, sampled: torch.Tensor, finite: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw, reward) alignment scores from the step's per-domain gradients, summed over the
        ranks; zeros when the mixer learns from none or the loss was not finite."""
        raw = scores = np.zeros(len(self.domains))
        if self.grads is not None:
            grads = self.grads.take()
            self.collective.sum_(grads)
            if finite:
                mean = grads.cpu() / tokens.clamp(min=1).unsqueeze(1).float()
                sig, ref = self.sig, None
                if self.reference is not None:  # each rank's own rows: their mean
                    ref = self.reference(self.step_count, self.rank)
                    ref = self.collective.sum_(ref) / self.collective.world_size
                raw, scores = step_scores(
                    mean, sampled, sig.score, sig.score_clip, sig.z_clip, self.scale, ref
                )
        return raw, scores

    def _next(self, signals: StepSignals) -> np.ndarray:
        """Rank 0's next weights: the mixer learns from the step and decides, unless the loss was
        not finite (then the weights stay)."""
        if signals.finite:
            self.mixer.update(signals)
            return self.mixer.weights(signals.state)
        return self.current

    # ------------------------------------------------------------------ resume and export

    def state_dict(self) -> dict[str, Any]:
        """Mixer (rank 0's), dataset, state tracker, weight snapshots and running scale: with the
        model and optimizer restored, the continuation is the uninterrupted run's."""
        return {
            "format": STATE_FORMAT,
            "step": self.step_count,
            "domains": list(self.domains),
            "mixer_name": self.mixer.name,
            "mixer": self.mixer.state_dict() if self.rank == 0 else None,
            "dataset": self.dataset.state_dict(),
            "tracker": self.tracker.state_dict(),
            "tracked": self.tracked.state_dict(),
            "scale": self.scale.state_dict(),
            "last_state": torch.from_numpy(self.last_state.copy()),
            "current": torch.from_numpy(self.current.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mixer_name") != self.mixer.name:
            raise ValueError(
                f"mixing state is for mixer {state.get('mixer_name')!r}, this loop runs "
                f"{self.mixer.name!r}: resume with the mixer the run was started with"
            )
        self.dataset.load_state_dict(state["dataset"])
        if self.rank == 0 and state["mixer"] is not None:
            self.mixer.load_state_dict(state["mixer"])
        self.tracker.load_state_dict(state["tracker"])
        self.tracked.load_state_dict(state["tracked"])
        self.scale.load_state_dict(state["scale"])
        self.last_state = state["last_state"].numpy().copy()
        self.current = state["current"].numpy().copy()
        self.step_count = int(state["step"])
        self._reset()

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.state_dict())

    def load(self, path: str | Path) -> None:
        self.load_state_dict(load_checkpoint(path))

    def export_policy(self, out_dir: str | Path, config: dict[str, Any] | None = None) -> Path:
        """The online agent's actor as an exported policy (what `--policy` / `target.policy` read)."""
        if self.mixer.name != ONLINE:
            raise ValueError(
                f"only the online AC-ODM agent learns a policy; this loop runs {self.mixer.name!r}"
            )
        return save_policy(out_dir, self.mixer.actor, self.domains, self.state_spec, config or {})

    def remove(self) -> None:
        """Take the hooks off the model."""
        self._hook.remove()
        if self.grads is not None:
            self.grads.remove()
