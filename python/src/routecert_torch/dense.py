"""The dense model of Theorem 4.1 as a TransformerLens ``HookedTransformer``.

The weights go in as they are: ``load_state_dict`` on the module TL builds,
not ``load_and_process_state_dict``, so no fold_ln, no centering of the
writing weights or the unembedding, nothing TL would do to a pretrained
model. TL's own buffers (the causal mask, IGNORE) stay as TL made them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from .errors import BadInput
from .linear import dense
from .modelfile import ModelFile

#: config.json keys that are HookedTransformerConfig fields.
TL_FIELDS = (
    "n_layers",
    "d_model",
    "n_ctx",
    "d_head",
    "n_heads",
    "d_mlp",
    "d_vocab",
    "act_fn",
    "normalization_type",
    "positional_embedding_type",
    "use_attn_scale",
    "attn_only",
    "default_prepend_bos",
    "tokenizer_name",
)


def tl_config(file: ModelFile, dtype: torch.dtype = torch.float64) -> HookedTransformerConfig:
    """The HookedTransformerConfig of config.json (its TL fields), on the CPU in ``dtype``."""
    raw = file.config.raw
    fields: dict[str, Any] = {key: raw[key] for key in TL_FIELDS if key in raw}
    fields.update(dtype=dtype, device="cpu", init_weights=False)
    return HookedTransformerConfig(**fields)


def load_hooked_transformer(
    file: ModelFile, dtype: torch.dtype = torch.float64
) -> HookedTransformer:
    """The dense model of ``file`` in TransformerLens, weights loaded without processing.

    Sparse tensors are densified: TL's einsums take strided tensors only.
    """
    if file.config.model != "dense":
        raise BadInput(
            file.directory / "config.json",
            "model",
            f"TransformerLens loads the dense model; this file holds {file.config.model!r}",
        )
    model = HookedTransformer(tl_config(file, dtype))
    state = model.state_dict()
    for name, tensor in file.tensors.items():
        if name not in state:
            raise BadInput(
                file.directory / "model.safetensors", name, "not a HookedTransformer weight"
            )
        if list(state[name].shape) != list(tensor.shape):
            raise BadInput(
                file.directory / "model.safetensors",
                name,
                f"HookedTransformer wants {list(state[name].shape)}, the file has "
                f"{list(tensor.shape)}",
            )
        state[name] = dense(tensor).to(dtype)
    # Every weight TL has must come from the file; only buffers may stay TL's.
    buffers = {name for name, _ in model.named_buffers()}
    missing = sorted(set(state) - set(file.tensors) - buffers)
    if missing:
        raise BadInput(file.directory / "model.safetensors", missing[0], "missing")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model
