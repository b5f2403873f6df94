"""What the actor's objective asks for at given values: the weights an actor objective is fitted
to ("projection", "proportional", "lcb") and that `ddpg.optimum_gap` measures the actor against.

Pure functions of a [..., K] tensor of per-domain values (in the units `ddpg.per_step_values`
gives), so they can be checked against the KKT conditions by hand.
"""

from __future__ import annotations

import torch

FITTED_OBJECTIVES = ("projection", "proportional", "lcb")  # fitted to `objective_optimum`


def proportional(values: torch.Tensor, floor: float, margin: float = 0.0) -> torch.Tensor:
    """Per row, w = floor + (1 - K floor) max(v - margin, 0) / sum_j max(v_j - margin, 0): weights
    proportional to the positive part of the values less `margin` (uniform where none is
    positive), the maximiser of sum_i (v_i - margin) log w_i over the simplex above the floor when
    every v_i > margin.

    Why (agent.actor_objective "proportional"): a utility with diminishing returns in each domain's
    share (log), where "weighted" is linear in it and only its temperature keeps the optimum off a
    vertex; a domain whose value is 1.5 times another's gets 1.5 times its weight, not exp(0.5 / T)
    times, and one whose value is not positive only its floor. "lcb" subtracts the actor's
    temperature first: under the evidence temperature (the values' standard error) a domain's
    weight follows its value's lower confidence bound
    (docs/studies/2026-12-05-closing-the-gap-dev.md)."""
    v = (values.to(torch.float64) - margin).clamp_min(0.0)
    total = v.sum(dim=-1, keepdim=True)
    share = torch.where(
        total > 0, v / total.clamp_min(1e-300), torch.full_like(v, 1.0 / v.shape[-1])
    )
    return floor + (1.0 - v.shape[-1] * floor) * share


def objective_optimum(
    values: torch.Tensor, objective: str, temperature: float, floor: float
) -> torch.Tensor:
    """The weights the actor's objective asks for at constant `values`: `proportional` for the
    "proportional" objective, `floored_softmax` at `temperature` for the others."""
    if objective == "proportional":
        return proportional(values, floor)
    if objective == "lcb":
        return proportional(values, floor, margin=temperature)
    return floored_softmax(values, temperature, floor)


def floored_softmax(values: torch.Tensor, temperature: float, floor: float) -> torch.Tensor:
    """argmax over {w : w_i >= floor, sum_i w_i = 1} of sum_i w_i v_i + T H(w), per row: by the KKT
    conditions w_i = max(floor, c exp(v_i / T)) with c setting the sum to 1 (T = 0: the floor
    everywhere and the rest on the best domain). The "weighted" actor's optimum (with constant
    values), which its (1 - K floor) softmax + floor output can represent exactly."""
    v = values.detach().to(torch.float64)
    K = v.shape[-1]
    if temperature <= 0.0:
        best = torch.nn.functional.one_hot(v.argmax(dim=-1), K).to(v.dtype)
        return floor + (1.0 - K * floor) * best
    e = torch.exp((v - v.max(dim=-1, keepdim=True).values) / temperature)
    clipped = torch.zeros_like(v, dtype=torch.bool)
    for _ in range(K):  # move the domains below the floor to it until none is left
        free = (e * ~clipped).sum(dim=-1, keepdim=True)
        c = (1.0 - floor * clipped.sum(dim=-1, keepdim=True).to(v.dtype)) / free.clamp_min(1e-300)
        now = clipped | (c * e < floor)
        if bool((now == clipped).all()):
            break
        clipped = now
    return torch.where(clipped, torch.full_like(v, floor), c * e)
