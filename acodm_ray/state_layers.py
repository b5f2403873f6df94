"""Which layers' MLP output matrices enter the state (docs/method.md): a function of the layer count
alone, so a plan (`compare.state_layers`, the dry run) knows the state's size without importing torch
or building a model. `acodm_ray.model` applies it to a model's parameters."""

from __future__ import annotations


def state_layer_indices(num_layers: int, count: int | None = None) -> list[int]:
    """Layers whose MLP output matrix enters the state, top first.

    Default: every other layer counted down from the top (the reference). A fixed `count` keeps the
    state size equal across models of different depth, which proxy -> target transfer needs: the
    every-other list is cut to `count`, or topped up with the skipped layers (top first) if short.
    """
    every_other = list(range(num_layers - 1, -1, -2))
    if count is None:
        return every_other
    if count > num_layers:
        raise ValueError(
            f"signals.state_layers = {count} but the model has only {num_layers} layers"
        )
    skipped = [i for i in range(num_layers - 1, -1, -1) if i not in every_other]
    return (every_other + skipped)[:count]
