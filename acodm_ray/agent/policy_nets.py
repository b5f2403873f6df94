"""Exported mixing policies other than the AC-ODM actor, rebuilt in pure torch (no RLlib).

Both map a batch of states [B, state_dim] to domain weights on the simplex [B, K], like
`Actor.forward`, and are described entirely by data (the layer list and the post-processing
steps are JSON in policy.json, the tensors are safetensors; see `policy_file`):

- `MLPPolicy` (policy kind "mlp"): the deterministic action of an RLlib PPO / APPO / SAC policy
  on DataMixingEnv, as the env runner would compute it with `explore=False`. `network` is the
  actor's layer list (Linear / LayerNorm / activation); `action_steps` are the ops that turn the
  network's output (RLlib's ACTION_DIST_INPUTS) into weights, in order:
    {"op": "slice", "start": 0, "stop": K}        the Gaussian's loc (first half of the inputs)
    {"op": "squash", "low": l, "high": h}           TorchSquashedGaussian._squash:
                                                     clamp(((tanh(x) + 1) / 2) * (h - l) + l, l, h)
    {"op": "unsquash", "low": [..], "high": [..]}   unsquash_action (normalize_actions=True):
                                                     clip(low + (x + 1) * (high - low) / 2, low, high)
    {"op": "clip", "low": [..], "high": [..]}       clip_action (normalize_actions=False, clip_actions)
    {"op": "simplex", "eps": e}                      the env's action_to_weights(., "simplex", e):
                                                     (max(a, 0) + e) / sum(max(a, 0) + e), in float64
    {"op": "softmax"}                                the env's action_to_weights(., "softmax")
  The last op is "simplex" or "softmax".
- `TrajectoryPolicy` (policy kind "trajectory"): a fixed [T, K] weight schedule (row t = the
  weights of optimizer step t of a T-step run) replayed by training progress: the state's last
  entry is progress * progress_scale, and the policy returns row min(T - 1, floor(p * T + tol))
  with p = clamp(state[-1] / progress_scale, 0, 1). tol = 1e-9 + p * T * (2^-24 + 1e-12) absorbs
  the float32 rounding of the progress entry (relative error <= 2^-24), so a run of T steps replays
  row t before its step t exactly; on a run of T_run steps the row is floor(t * T / T_run) exactly
  while T * T_run < 2^24 (beyond that float32 progress cannot tell neighbouring rows apart).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
ACTION_OPS = ("slice", "squash", "unsquash", "clip", "simplex", "softmax")
MAPPING_OPS = ("simplex", "softmax")
# float32 progress entries are off by at most a relative 2^-24 (plus float64 slack)
TRAJECTORY_FLOAT32_MARGIN = 2.0**-24 + 1e-12


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _finite_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _float_vector(value: Any, size: int, what: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ValueError(f"{what} must be a list of {size} numbers, got {value!r}")
    return [_finite_float(v, f"{what}[{i}]") for i, v in enumerate(value)]


def build_network(state_dim: int, network: Sequence[dict[str, Any]]) -> tuple[nn.Sequential, int]:
    """The nn.Sequential a layer list describes, and its output width. Refuses unknown layer
    types, inconsistent widths and anything that is not plain data."""
    if not isinstance(network, (list, tuple)) or not network:
        raise ValueError(f"network must be a non-empty list of layers, got {network!r}")
    width = _positive_int(state_dim, "state_dim")
    modules: list[nn.Module] = []
    for i, layer in enumerate(network):
        if not isinstance(layer, dict) or "type" not in layer:
            raise ValueError(f"network[{i}] must be a dict with a 'type', got {layer!r}")
        kind = layer["type"]
        if kind == "linear":
            n_in = _positive_int(layer.get("in_features"), f"network[{i}].in_features")
            n_out = _positive_int(layer.get("out_features"), f"network[{i}].out_features")
            bias = layer.get("bias", True)
            if not isinstance(bias, bool):
                raise ValueError(f"network[{i}].bias must be true or false, got {bias!r}")
            if n_in != width:
                raise ValueError(f"network[{i}] is a Linear from {n_in} features but its input has {width}")
            modules.append(nn.Linear(n_in, n_out, bias=bias))
            width = n_out
        elif kind == "layernorm":
            dim = _positive_int(layer.get("normalized_shape"), f"network[{i}].normalized_shape")
            if dim != width:
                raise ValueError(f"network[{i}] is a LayerNorm over {dim} features but its input has {width}")
            affine = layer.get("elementwise_affine", True)
            if not isinstance(affine, bool):
                raise ValueError(f"network[{i}].elementwise_affine must be true or false, got {affine!r}")
            eps = _finite_float(layer.get("eps", 1e-5), f"network[{i}].eps")
            modules.append(nn.LayerNorm(dim, eps=eps, elementwise_affine=affine))
        elif kind == "activation":
            name = layer.get("name")
            if name not in ACTIVATIONS:
                raise ValueError(f"network[{i}]: unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
            if name == "elu":
                modules.append(nn.ELU(alpha=_finite_float(layer.get("alpha", 1.0), f"network[{i}].alpha")))
            else:
                modules.append(ACTIVATIONS[name]())
        else:
            raise ValueError(f"network[{i}]: unknown layer type {kind!r}; known: linear, layernorm, activation")
    return nn.Sequential(*modules), width


def check_action_steps(steps: Sequence[dict[str, Any]], width: int, num_domains: int) -> list[dict[str, Any]]:
    """Validate the post-processing ops against the network's output width; returns a copy."""
    if not isinstance(steps, (list, tuple)) or not steps:
        raise ValueError(f"action_steps must be a non-empty list of ops, got {steps!r}")
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or step.get("op") not in ACTION_OPS:
            raise ValueError(f"action_steps[{i}]: unknown op in {step!r}; known: {list(ACTION_OPS)}")
        op = step["op"]
        if op in MAPPING_OPS and i != len(steps) - 1:
            raise ValueError(f"action_steps[{i}]: {op!r} maps onto the simplex and must be the last op")
        if op == "slice":
            start = step.get("start")
            stop = step.get("stop")
            if isinstance(start, bool) or not isinstance(start, int) or start < 0:
                raise ValueError(f"action_steps[{i}].start must be an integer >= 0, got {start!r}")
            if isinstance(stop, bool) or not isinstance(stop, int) or not start < stop <= width:
                raise ValueError(f"action_steps[{i}].stop must be in ({start}, {width}], got {stop!r}")
            out.append({"op": op, "start": start, "stop": stop})
            width = stop - start
        elif op == "squash":
            low, high = _finite_float(step.get("low"), f"action_steps[{i}].low"), _finite_float(
                step.get("high"), f"action_steps[{i}].high")
            if not low < high:
                raise ValueError(f"action_steps[{i}]: low {low} must be below high {high}")
            out.append({"op": op, "low": low, "high": high})
        elif op in ("unsquash", "clip"):
            low = _float_vector(step.get("low"), width, f"action_steps[{i}].low")
            high = _float_vector(step.get("high"), width, f"action_steps[{i}].high")
            if any(lo > hi for lo, hi in zip(low, high)):
                raise ValueError(f"action_steps[{i}]: some low bound is above its high bound")
            out.append({"op": op, "low": low, "high": high})
        elif op == "simplex":
            eps = _finite_float(step.get("eps"), f"action_steps[{i}].eps")
            if eps <= 0:
                raise ValueError(f"action_steps[{i}].eps must be > 0, got {eps}")
            out.append({"op": op, "eps": eps})
        else:
            out.append({"op": op})
    if out[-1]["op"] not in MAPPING_OPS:
        raise ValueError(f"the last action step must map onto the simplex ({list(MAPPING_OPS)}), got {out[-1]}")
    if width != num_domains:
        raise ValueError(f"the action steps produce {width} values for {num_domains} domains")
    return out


class MLPPolicy(nn.Module):
    """An MLP actor plus its deterministic action post-processing (see the module docstring)."""

    def __init__(
        self,
        state_dim: int,
        num_domains: int,
        network: Sequence[dict[str, Any]],
        action_steps: Sequence[dict[str, Any]],
    ) -> None:
        super().__init__()
        self.state_dim = _positive_int(state_dim, "state_dim")
        self.num_domains = _positive_int(num_domains, "num_domains")
        self.net, self.out_dim = build_network(state_dim, network)
        self.network = [dict(layer) for layer in network]
        self.action_steps = check_action_steps(action_steps, self.out_dim, self.num_domains)
        for i, step in enumerate(self.action_steps):
            if step["op"] in ("unsquash", "clip"):
                # float32 like the Box bounds RLlib's connector uses; not weights (non-persistent)
                self.register_buffer(f"_low{i}", torch.tensor(step["low"], dtype=torch.float32), persistent=False)
                self.register_buffer(f"_high{i}", torch.tensor(step["high"], dtype=torch.float32), persistent=False)

    def action_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """The network's output: RLlib's ACTION_DIST_INPUTS."""
        first = next(self.net.parameters())
        return self.net(obs.to(first.dtype))

    def env_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action the env would receive (every op but the final simplex mapping)."""
        x = self.action_inputs(obs)
        for i, step in enumerate(self.action_steps):
            op = step["op"]
            if op == "slice":
                x = x[..., step["start"]:step["stop"]]
            elif op == "squash":
                low, high = step["low"], step["high"]
                x = torch.clamp(((torch.tanh(x) + 1.0) / 2.0) * (high - low) + low, low, high)
            elif op == "unsquash":
                low, high = getattr(self, f"_low{i}"), getattr(self, f"_high{i}")
                x = low + (x + 1.0) * (high - low) / 2.0
                x = torch.minimum(torch.maximum(x, low), high)
            elif op == "clip":
                low, high = getattr(self, f"_low{i}"), getattr(self, f"_high{i}")
                x = torch.minimum(torch.maximum(x, low), high)
        return x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        a = self.env_action(obs).to(torch.float64)
        last = self.action_steps[-1]
        if last["op"] == "simplex":
            a = torch.clamp_min(a, 0.0) + last["eps"]
            w = a / a.sum(dim=-1, keepdim=True)
        else:
            w = torch.softmax(a, dim=-1)
        return w.to(obs.dtype if obs.is_floating_point() else torch.float32)


class TrajectoryPolicy(nn.Module):
    """A [T, K] weight schedule replayed by training progress (see the module docstring)."""

    def __init__(self, weights: torch.Tensor, progress_scale: float) -> None:
        super().__init__()
        if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] < 1:
            raise ValueError(f"weights must be a [T, K] tensor with T, K >= 1, got shape {tuple(weights.shape)}")
        self.progress_scale = _finite_float(progress_scale, "progress_scale")
        if self.progress_scale <= 0:
            raise ValueError(f"progress_scale must be > 0, got {progress_scale!r}")
        self.register_buffer("weights", weights.detach().to(torch.float64).clone())

    @property
    def num_steps(self) -> int:
        return int(self.weights.shape[0])

    @property
    def num_domains(self) -> int:
        return int(self.weights.shape[1])

    def rows(self, obs: torch.Tensor) -> torch.Tensor:
        """The schedule row each state selects (by its last entry, the scaled progress)."""
        progress = torch.clamp(obs[..., -1].to(torch.float64) / self.progress_scale, 0.0, 1.0)
        progress = torch.nan_to_num(progress, nan=0.0)
        T = self.num_steps
        scaled = progress * T
        rows = torch.floor(scaled + 1e-9 + scaled * TRAJECTORY_FLOAT32_MARGIN).to(torch.long)
        return torch.clamp(rows, 0, T - 1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        w = self.weights[self.rows(obs)]
        return w.to(obs.dtype if obs.is_floating_point() else torch.float32)
