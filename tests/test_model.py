"""Model factory: HF architectures from config, tracked matrices per docs/method.md."""

import numpy as np
import pytest

from acodm_ray.config import ModelConfig
from acodm_ray.model import (
    alignment_params,
    build_model,
    mlp_out_params,
    state_layer_indices,
    state_params,
)
from acodm_ray.train_step import LMTrainer
from tests.conftest import tiny_config


def layer_of(name: str) -> int:
    return (
        int(name.split(".")[-4])
        if "gpt_neox" in name
        else int([p for p in name.split(".") if p.isdigit()][0])
    )


def test_state_layers_every_other_from_the_top_and_fixed_counts():
    assert state_layer_indices(16) == [15, 13, 11, 9, 7, 5, 3, 1]
    assert state_layer_indices(2) == [1]
    assert state_layer_indices(12, 8) == [11, 9, 7, 5, 3, 1, 10, 8]  # topped up for transfer
    assert state_layer_indices(24, 8) == [23, 21, 19, 17, 15, 13, 11, 9]
    with pytest.raises(ValueError, match="only 4 layers"):
        state_layer_indices(4, 8)


def test_alignment_matrices_are_in_the_top_half():
    model = build_model(ModelConfig(hidden_size=32, num_layers=16, num_heads=2), 64, 63, 0)
    names = [n for n, _ in alignment_params(model, 3)]
    assert [layer_of(n) for n in names] == [15, 13, 11]  # the reference's three of the top half
    assert all(n.endswith("mlp.dense_4h_to_h.weight") for n in names)
    assert len(mlp_out_params(model)) == 16 and len(state_params(model)) == 8


@pytest.mark.parametrize("model_type", ["gpt_neox", "gpt2", "llama"])
def test_hf_architectures_build_and_train(corpus, model_type):
    extra = {"hf_overrides": "{num_key_value_heads: 2}"} if model_type == "llama" else {}
    cfg = tiny_config(model={"model_type": model_type, **extra}, train={"grad_accum": 3})
    trainer = LMTrainer(cfg, corpus, device="cpu")
    assert trainer.model.config.model_type == model_type
    s = trainer.step(np.full(3, 1 / 3))
    assert np.isfinite(s.loss) and s.state.shape == (3 * 3 + 2 * len(trainer.state_params) + 1,)


def test_unknown_model_type_and_missing_suffix(corpus):
    with pytest.raises(ValueError, match="not a known HF config type"):
        build_model(ModelConfig(model_type="no_such_arch"), 64, 63, 0)
    cfg = tiny_config(signals={"param_suffix": "mlp.nonexistent.weight"})
    with pytest.raises(ValueError, match="no parameter of the model ends with"):
        LMTrainer(cfg, corpus, device="cpu")


def test_same_seed_same_init_different_seed_different_init():
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2)
    a, b, c = build_model(cfg, 64, 63, 1), build_model(cfg, 64, 63, 1), build_model(cfg, 64, 63, 2)
    wa, wb, wc = (m.get_input_embeddings().weight for m in (a, b, c))
    assert (wa == wb).all() and not (wa == wc).all()
