"""Model factory: Hugging Face causal LMs trained from scratch, plus the weight matrices AC-ODM tracks.

GPT-NeoX (the Pythia shape the paper uses) is the default; any `transformers` config type works
through `model.model_type` + `model.hf_overrides`. Models are saved with `save_pretrained`, so
lm-eval and every HF tool can load the result.
"""

from __future__ import annotations

import re

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from acodm_ray.config import ModelConfig
from acodm_ray.state_layers import state_layer_indices

# Name suffix of each block's MLP output projection, per architecture. docs/method.md tracks these
# matrices: every other layer for the state, the top half for the alignment scores.
MLP_OUT_SUFFIX = {
    "gpt_neox": "mlp.dense_4h_to_h.weight",
    "gpt2": "mlp.c_proj.weight",
    "llama": "mlp.down_proj.weight",
    "mistral": "mlp.down_proj.weight",
    "qwen2": "mlp.down_proj.weight",
    "gemma": "mlp.down_proj.weight",
    "opt": "fc2.weight",
}

# Field names differ across HF configs; these are the ones our small config maps onto.
_FIELD_NAMES = {
    "gpt2": {
        "hidden_size": "n_embd",
        "num_layers": "n_layer",
        "num_heads": "n_head",
        "intermediate_size": "n_inner",
        "max_position_embeddings": "n_positions",
    },
    "opt": {
        "hidden_size": "hidden_size",
        "num_layers": "num_hidden_layers",
        "num_heads": "num_attention_heads",
        "intermediate_size": "ffn_dim",
        "max_position_embeddings": "max_position_embeddings",
    },
}
_DEFAULT_FIELDS = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
}


def resolve_device(name: str) -> torch.device:
    """`train.device`: "auto" is CUDA when there is one, else the CPU; "cuda" without one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


def build_hf_config(cfg: ModelConfig, vocab_size: int, eos_id: int) -> PretrainedConfig:
    """An HF config of `cfg.model_type` with our size fields and any `hf_overrides` applied."""
    names = _FIELD_NAMES.get(cfg.model_type, _DEFAULT_FIELDS)
    fields = {
        names["hidden_size"]: cfg.hidden_size,
        names["num_layers"]: cfg.num_layers,
        names["num_heads"]: cfg.num_heads,
        names["intermediate_size"]: cfg.intermediate_size or 4 * cfg.hidden_size,
        names["max_position_embeddings"]: cfg.max_position_embeddings,
        "vocab_size": vocab_size,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": eos_id,
        "tie_word_embeddings": False,
    }
    if cfg.model_type == "gpt_neox":
        fields["use_parallel_residual"] = True  # Pythia
    fields.update(cfg.hf_overrides)
    try:
        return AutoConfig.for_model(cfg.model_type, **fields)
    except ValueError as err:
        raise ValueError(
            f"model.model_type {cfg.model_type!r} is not a known HF config type: {err}"
        ) from err


def build_model(cfg: ModelConfig, vocab_size: int, eos_id: int, seed: int) -> PreTrainedModel:
    """A freshly initialised causal LM; the seed makes proxies reproducible across env resets."""
    hf_config = build_hf_config(cfg, vocab_size, eos_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=cfg.trust_remote_code)
    return model


def _layer_index(name: str) -> int:
    match = re.search(r"\.(\d+)\.", name)
    if match is None:
        raise ValueError(f"cannot find a layer index in parameter name {name!r}")
    return int(match.group(1))


def mlp_out_params(
    model: torch.nn.Module, suffix: str | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """The MLP output projections of every block, ordered bottom to top."""
    if suffix is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in MLP_OUT_SUFFIX:
            raise ValueError(
                f"no default tracked-weight suffix for model type {model_type!r}; set "
                f"signals.param_suffix (known types: {sorted(MLP_OUT_SUFFIX)})"
            )
        suffix = MLP_OUT_SUFFIX[model_type]
    found = [(n, p) for n, p in model.named_parameters() if n.endswith(suffix)]
    if not found:
        raise ValueError(f"no parameter of the model ends with {suffix!r}")
    return sorted(found, key=lambda item: _layer_index(item[0]))


def state_params(
    model: torch.nn.Module, suffix: str | None = None, count: int | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """Matrices whose norms enter the state (see `state_layer_indices`)."""
    params = mlp_out_params(model, suffix)
    return [params[i] for i in state_layer_indices(len(params), count)]


def alignment_params(
    model: torch.nn.Module, num_layers: int, suffix: str | None = None
) -> list[tuple[str, torch.nn.Parameter]]:
    """Matrices whose per-domain gradients give the alignment scores: up to `num_layers` of the
    top half, every other layer from the top (the reference: three of the top half)."""
    params = list(reversed(mlp_out_params(model, suffix)))
    top_half = params[: max(1, (len(params) + 1) // 2)]
    return (
        top_half[::2][:num_layers] if len(top_half) >= 2 * num_layers - 1 else top_half[:num_layers]
    )
