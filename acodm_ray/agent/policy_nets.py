"""Exported mixing policies other than the AC-ODM actor, rebuilt in pure torch (no RLlib).

Both map a batch of states [B, state_dim] to domain weights on the simplex [B, K], like
`Actor.forward`, and are described entirely by data (a few JSON fields in policy.json, the
tensors in safetensors; see `policy_file`):

- `MLPPolicy` (policy kind "mlp"): the deterministic action of an RLlib PPO / APPO / SAC policy
  on DataMixingEnv, as the env runner computes it with `explore=False`, described by `MLPSpec`:
    widths [state_dim, h1, ..., n_out]   one Linear (with bias) from each width to the next: RLlib's
                                         encoder MLP then its pi head (ACTION_DIST_INPUTS)
    activations [name | null per Linear] relu, tanh, sigmoid, silu or elu, after that Linear
    layer_norm [bool per Linear]         a LayerNorm (eps 1e-5, affine) between the Linear and its
                                         activation, where RLlib's `*_use_layernorm` puts one
    then the action, from the first K outputs (the Gaussian's loc):
    squash (bool)                        SAC's TorchSquashedGaussian._squash with low -1, high 1:
                                         clamp(((tanh(x) + 1) / 2) * (high - low) + low, low, high)
    bounds "unsquash" | "clip" | "none"  NormalizeAndClipActions against the Box [action_low,
                                         action_high]: unsquash_action, clip(low + (x + 1) *
                                         (high - low) / 2, low, high) (normalize_actions=True), or
                                         clip_action (clip_actions=True)
    action_mapping, action_epsilon       the env's `acodm_ray.actions.action_to_weights`, the same
                                         function (the action itself is float32 torch
                                         here and numpy in RLlib's connector: equal to ~1e-7)
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
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from acodm_ray.actions import ACTION_MAPPINGS, action_to_weights

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}
BOUNDS = ("unsquash", "clip", "none")
LAYER_NORM_EPS = 1e-5  # torch's default, which RLlib's MLPs use
SQUASH_LOW, SQUASH_HIGH = (
    -1.0,
    1.0,
)  # GetActions builds the squashed Gaussian with from_logits' defaults
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


def _list_of(value: Any, size: int, what: str) -> list:
    if not isinstance(value, (list, tuple)) or len(value) != size:
        raise ValueError(f"{what} must be a list of {size} entries, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class MLPSpec:
    """An "mlp" policy as policy.json describes it (fields as in the module docstring)."""

    widths: list[int]
    activations: list[str | None]
    layer_norm: list[bool]
    squash: bool
    bounds: str
    action_low: list[float] | None
    action_high: list[float] | None
    action_mapping: str
    action_epsilon: float

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> MLPSpec:
        return cls(**{name: meta[name] for name in MLP_FIELDS})

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, state_dim: int, num_domains: int) -> None:
        """Raise ValueError naming the field that is not plain, consistent data."""
        if not isinstance(self.widths, (list, tuple)) or len(self.widths) < 2:
            raise ValueError(
                f"widths must list the input and at least one layer, got {self.widths!r}"
            )
        for i, width in enumerate(self.widths):
            _positive_int(width, f"widths[{i}]")
        if self.widths[0] != state_dim:
            raise ValueError(f"widths[0] is {self.widths[0]} but the state has {state_dim} entries")
        if self.widths[-1] < num_domains:
            raise ValueError(
                f"the last layer gives {self.widths[-1]} outputs, fewer than the {num_domains} domains"
            )
        n = len(self.widths) - 1
        for i, name in enumerate(_list_of(self.activations, n, "activations")):
            if name is not None and name not in ACTIVATIONS:
                raise ValueError(
                    f"activations[{i}]: unknown activation {name!r}; known: {sorted(ACTIVATIONS)}"
                )
        if not all(isinstance(flag, bool) for flag in _list_of(self.layer_norm, n, "layer_norm")):
            raise ValueError(
                f"layer_norm must hold true or false per layer, got {self.layer_norm!r}"
            )
        if not isinstance(self.squash, bool):
            raise ValueError(f"squash must be true or false, got {self.squash!r}")
        if self.bounds not in BOUNDS:
            raise ValueError(f"unknown bounds {self.bounds!r}; choose one of {list(BOUNDS)}")
        if self.bounds != "none":
            low = [
                _finite_float(v, "action_low")
                for v in _list_of(self.action_low, num_domains, "action_low")
            ]
            high = [
                _finite_float(v, "action_high")
                for v in _list_of(self.action_high, num_domains, "action_high")
            ]
            if any(lo > hi for lo, hi in zip(low, high)):
                raise ValueError("some entry of action_low is above its action_high")
        if self.action_mapping not in ACTION_MAPPINGS:
            raise ValueError(
                f"unknown action mapping {self.action_mapping!r}; choose one of {list(ACTION_MAPPINGS)}"
            )
        eps = _finite_float(self.action_epsilon, "action_epsilon")
        if self.action_mapping == "simplex" and eps <= 0:
            raise ValueError(f"action_epsilon must be > 0 for the simplex mapping, got {eps}")


MLP_FIELDS = tuple(MLPSpec.__dataclass_fields__)


def network_fields(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """`MLPSpec`'s widths / activations / layer_norm for a layer list in RLlib's order, each layer
    a dict: {"type": "linear", "in_features", "out_features", "bias"}, {"type": "layernorm",
    "normalized_shape", "eps", "elementwise_affine"} or {"type": "activation", "name", "alpha"}
    (the exporter's reading of RLlib's modules, and what format_version 1 stored). A layer the
    fields cannot say (no bias, a LayerNorm after the activation, ...) is refused, named."""
    widths: list[int] = []
    activations: list[str | None] = []
    layer_norm: list[bool] = []
    for i, layer in enumerate(layers):
        kind = layer.get("type")
        widths.extend([] if widths or kind != "linear" else [layer["in_features"]])  # the input
        after_linear = (
            bool(activations) and activations[-1] is None
        )  # before that Linear's activation
        if (
            kind == "linear"
            and layer["in_features"] == widths[-1]
            and layer.get("bias", True) is True
        ):
            widths.append(layer["out_features"])
            activations.append(None)
            layer_norm.append(False)
        elif (
            kind == "layernorm"
            and after_linear
            and not layer_norm[-1]
            and layer.get("normalized_shape", widths[-1]) == widths[-1]
            and layer.get("eps", LAYER_NORM_EPS) == LAYER_NORM_EPS
            and layer.get("elementwise_affine", True) is True
        ):
            layer_norm[-1] = True
        elif kind == "activation" and after_linear and layer.get("alpha", 1.0) == 1.0:
            activations[-1] = layer.get("name")
        else:
            raise ValueError(
                f"layer {i} ({layer!r}) cannot be described: supported are Linear (with bias), then "
                f"LayerNorm (eps {LAYER_NORM_EPS}, affine), then one of {sorted(ACTIVATIONS)}"
            )
    return {"widths": widths, "activations": activations, "layer_norm": layer_norm}


class MLPPolicy(nn.Module):
    """An MLP actor plus its deterministic action post-processing (see the module docstring)."""

    def __init__(self, state_dim: int, num_domains: int, spec: MLPSpec) -> None:
        super().__init__()
        self.state_dim = _positive_int(state_dim, "state_dim")
        self.num_domains = _positive_int(num_domains, "num_domains")
        spec.check(state_dim, num_domains)
        self.spec = spec
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(spec.widths[:-1], spec.widths[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if spec.layer_norm[i]:
                layers.append(nn.LayerNorm(n_out, eps=LAYER_NORM_EPS))
            if spec.activations[i] is not None:
                layers.append(ACTIVATIONS[spec.activations[i]]())
        self.net = nn.Sequential(*layers)
        if spec.bounds != "none":
            # float32 like the Box bounds RLlib's connector uses; not weights (non-persistent)
            self.register_buffer(
                "low", torch.tensor(spec.action_low, dtype=torch.float32), persistent=False
            )
            self.register_buffer(
                "high", torch.tensor(spec.action_high, dtype=torch.float32), persistent=False
            )

    def action_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """The network's output: RLlib's ACTION_DIST_INPUTS."""
        first = next(self.net.parameters())
        return self.net(obs.to(first.dtype))

    def env_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action the env would receive: the loc, squashed and bounded as the spec says."""
        x = self.action_inputs(obs)[..., : self.num_domains]
        if self.spec.squash:
            x = ((torch.tanh(x) + 1.0) / 2.0) * (SQUASH_HIGH - SQUASH_LOW) + SQUASH_LOW
            x = torch.clamp(x, SQUASH_LOW, SQUASH_HIGH)
        if self.spec.bounds == "unsquash":
            x = self.low + (x + 1.0) * (self.high - self.low) / 2.0
        if self.spec.bounds != "none":
            x = torch.minimum(torch.maximum(x, self.low), self.high)
        return x

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        action = self.env_action(obs).detach().cpu().numpy()
        w = torch.from_numpy(
            action_to_weights(action, self.spec.action_mapping, self.spec.action_epsilon)
        )
        return w.to(
            device=obs.device, dtype=obs.dtype if obs.is_floating_point() else torch.float32
        )


class TrajectoryPolicy(nn.Module):
    """A [T, K] weight schedule replayed by training progress (see the module docstring)."""

    def __init__(self, weights: torch.Tensor, progress_scale: float) -> None:
        super().__init__()
        if weights.ndim != 2 or weights.shape[0] < 1 or weights.shape[1] < 1:
            raise ValueError(
                f"weights must be a [T, K] tensor with T, K >= 1, got shape {tuple(weights.shape)}"
            )
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
