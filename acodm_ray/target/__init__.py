"""Target pretraining on Ray Train with the mixer served by a `PolicyServer` (library side, no RLlib).

`run_target` (what `jobs/target_pretrain.py` calls) runs on the driver:
  1. loads the corpus (building the on-disk caches the workers then read), decides the mixer --
     an exported policy (proxy mode, `target.policy`), the online AC-ODM agent (non-proxy mode,
     `target.online_acodm`) or `cfg.mixer` (uniform/natural/file/odm) -- and refuses a policy whose
     domains or state size differ from the run's before anything starts;
  2. starts the named `PolicyServer` actor (num_cpus=0);
  3. runs `ray.train.torch.TorchTrainer(train_worker)` with ScalingConfig/RunConfig/FailureConfig
     from `cfg.target`;
  4. saves the final model (`save_pretrained` + tokenizer) from the final checkpoint into
     <run dir>/model, the learned actor of an online run into <run dir>/policy, summary and plots.

`train_worker` runs on every Train worker:
  - builds the tokenized corpus (disk cache) and an `LMTrainer` with the run's seed (identical
    model init and domain plan on every rank; the sampler's windows are seeded per rank) and a
    `TorchCollective` over torch.distributed (gloo on CPU, nccl on GPU);
  - every `target.decide_every` steps rank 0 asks the server for weights from the trainer's state
    (built from per-domain losses/counts already summed over all workers) and broadcasts them, so
    every rank samples with the same weights (checked at every step when
    `target.check_weights_sync`); rank 0 sends each step's signals to the server's `update`. This
    is `served.ServedWeights`, a `Mixer` stepped by the same `loop.mixing_step` as one-process
    pretraining and the rollouts;
  - evaluates per-domain validation perplexity every `train.eval_every` steps, and calls
    `ray.train.report(metrics, checkpoint=...)` with a checkpoint every `train.checkpoint_every`
    steps (and at the end): trainer.pt (model, optimizer, sampler, tracker, step; rank 0) + the
    mixer/server state + the weights in use, and rank<r>.pt (each rank's own sampler RNG).

Resume: a restarted worker group (FailureConfig.max_failures) or a restarted job with the same
run name (`--resume`) gets the latest checkpoint from `ray.train.get_checkpoint()`; every rank
restores its full state at step s (model, optimizer, LR step, its own sampler RNGs, state tracker,
the weights in use), rank 0 restores the server's mixer state of step s and drops the metrics and
rank logs written after s, and training continues at step s + 1. A checkpoint counts only once
every rank has reported it, and rank 0 waits until Ray Train has committed it
(`get_all_reported_checkpoints(COMMITTED)`) before the next step, so a worker lost after step s
resumes from s, not from an older checkpoint. Every step after s is recomputed from the restored
RNG states, so the resumed run takes exactly the steps an uninterrupted run takes: none lost, none
repeated in the metrics.

Why no DDP wrapper: `LMTrainer` already sums per-domain losses and per-domain alignment gradients
and averages the parameter gradients through its `Collective` (`_sync_grads`), after reading each
micro-batch's alignment gradients from the LOCAL `.grad`. DDP's autograd hooks would all-reduce
every micro-batch's gradients during backward (so the per-domain differences would already be
world-averaged, then summed again) and average the gradients a second time. A plain
`torch.distributed.all_reduce` Collective reduces every gradient exactly once, per step.

If the server is unreachable, training continues with the last weights and a warning (see
`PolicyClient`); the mixer is never switched.

The package: `driver` (run_target), `finish` (what the driver writes once training is done),
`worker` (train_worker: the rank's `TargetTrainer` with `restore`, `step`, `maybe_eval`,
`maybe_checkpoint`), `served` (the weights a rank trains with), `events` (events.jsonl and the rank
logs), `faults` (test hooks). The run's lifecycle (run dir, config snapshot, tracking, summary) is
`acodm_ray.run.Run`'s: the driver starts the run, rank 0 joins it.
"""

from acodm_ray.collective import TorchCollective
from acodm_ray.runplan import mixer_label, mode_overrides
from acodm_ray.target.driver import (
    RAY_STORAGE_DIR,
    absolutize_paths,
    mixer_spec_for,
    run_target,
    state_spec_for,
)
from acodm_ray.target.faults import FAULTS_ENV
from acodm_ray.target.finish import TargetTrainingError, closing_lines, finish_run
from acodm_ray.target.worker import RANK_FILE, TRAINER_FILE, TargetTrainer, train_worker

__all__ = [
    "run_target",
    "train_worker",
    "TargetTrainer",
    "TorchCollective",
    "TargetTrainingError",
    "mixer_spec_for",
    "mixer_label",
    "mode_overrides",
    "state_spec_for",
    "absolutize_paths",
    "closing_lines",
    "finish_run",
    "FAULTS_ENV",
    "TRAINER_FILE",
    "RANK_FILE",
    "RAY_STORAGE_DIR",
]
