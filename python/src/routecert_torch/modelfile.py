"""Reading a routecert model directory (docs/model-file.md) into torch tensors.

Reading a file is an untrusted-input boundary: every malformed part raises
:class:`BadInput` naming the file and the tensor or field, never a bare
``KeyError`` or a torch assertion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .errors import BadInput

FORMAT = "routecert-model/1"
FLOAT_DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
SHARED_TENSORS = (
    "embed.W_E",
    "pos_embed.W_pos",
    "blocks.0.attn.W_Q",
    "blocks.0.attn.W_K",
    "blocks.0.attn.W_V",
    "blocks.0.attn.W_O",
    "blocks.0.attn.b_Q",
    "blocks.0.attn.b_K",
    "blocks.0.attn.b_V",
    "blocks.0.attn.b_O",
    "unembed.W_U",
    "unembed.b_U",
)
FFN_PARTS = ("W_in", "b_in", "W_out", "b_out")


@dataclass(frozen=True)
class Expert:
    """One expert of the MoE model as config.json names it."""

    name: str
    d_mlp: int


@dataclass(frozen=True)
class Config:
    """The fields of config.json the readers use (the rest is kept in ``raw``)."""

    model: str
    layout: str
    dtype: str
    d_model: int
    n_ctx: int
    d_head: int
    n_heads: int
    d_mlp: int
    d_vocab: int
    vocab: list[str]
    experts: list[Expert]
    shapes: dict[str, list[int]]
    raw: dict[str, Any]

    def tensor_names(self) -> list[str]:
        """Every tensor the file must hold for this model, in docs/model-file.md's order."""
        names = list(SHARED_TENSORS)
        if self.model == "dense":
            names += [f"blocks.0.mlp.{p}" for p in FFN_PARTS]
        else:
            names += ["blocks.0.mlp.W_gate", "blocks.0.mlp.b_gate"]
            for e in range(len(self.experts)):
                names += [f"blocks.0.mlp.experts.{e}.{p}" for p in FFN_PARTS]
        return names

    def expected_shape(self, name: str) -> list[int]:
        """The shape docs/model-file.md gives tensor ``name`` under this config."""
        d, h, dh, v = self.d_model, self.n_heads, self.d_head, self.d_vocab
        fixed: dict[str, list[int]] = {
            "embed.W_E": [v, d],
            "pos_embed.W_pos": [self.n_ctx, d],
            "blocks.0.attn.W_Q": [h, d, dh],
            "blocks.0.attn.W_K": [h, d, dh],
            "blocks.0.attn.W_V": [h, d, dh],
            "blocks.0.attn.W_O": [h, dh, d],
            "blocks.0.attn.b_Q": [h, dh],
            "blocks.0.attn.b_K": [h, dh],
            "blocks.0.attn.b_V": [h, dh],
            "blocks.0.attn.b_O": [d],
            "unembed.W_U": [d, v],
            "unembed.b_U": [v],
            "blocks.0.mlp.W_gate": [d, len(self.experts)],
            "blocks.0.mlp.b_gate": [len(self.experts)],
        }
        if name in fixed:
            return fixed[name]
        prefix, part = name.rsplit(".", 1)
        if prefix == "blocks.0.mlp":
            width = self.d_mlp
        else:
            width = self.experts[int(prefix.rsplit(".", 1)[1])].d_mlp
        return {
            "W_in": [d, width],
            "b_in": [width],
            "W_out": [width, d],
            "b_out": [d],
        }[part]


@dataclass
class ModelFile:
    """A read model directory: its config, names and tensors.

    ``tensors`` maps each name of docs/model-file.md to a torch tensor in
    ``dtype``: strided for the dense layout, coalesced sparse COO for the
    sparse one.
    """

    directory: Path
    config: Config
    names: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(path, "", "no such file") from None
    except OSError as err:
        raise BadInput(path, "", f"cannot read: {err.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInput(path, f"line {err.lineno}", f"not JSON: {err.msg}") from None


def _field(path: Path, obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise BadInput(path, key, "missing")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadInput(path, key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _positive(path: Path, obj: dict[str, Any], key: str) -> int:
    value: int = _field(path, obj, key, int)
    if value < 1:
        raise BadInput(path, key, f"must be at least 1, got {value}")
    return value


def read_config(directory: Path) -> Config:
    """Parse and validate ``directory/config.json``."""
    path = directory / "config.json"
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise BadInput(path, "", "expected a JSON object")
    fmt = _field(path, raw, "format", str)
    if fmt != FORMAT:
        raise BadInput(path, "format", f"expected {FORMAT!r}, got {fmt!r}")
    model = _field(path, raw, "model", str)
    if model not in ("moe", "dense"):
        raise BadInput(path, "model", f"expected 'moe' or 'dense', got {model!r}")
    layout = _field(path, raw, "layout", str)
    if layout not in ("dense", "sparse"):
        raise BadInput(path, "layout", f"expected 'dense' or 'sparse', got {layout!r}")
    dtype = _field(path, raw, "dtype", str)
    if dtype not in FLOAT_DTYPES:
        raise BadInput(path, "dtype", f"expected one of {sorted(FLOAT_DTYPES)}, got {dtype!r}")
    if raw.get("n_layers") != 1:
        got = raw.get("n_layers")
        raise BadInput(path, "n_layers", f"routecert models have one layer, got {got!r}")
    fixed: tuple[tuple[str, object], ...] = (
        ("use_attn_scale", False),
        ("act_fn", "relu"),
        ("normalization_type", None),
    )
    for key, want in fixed:
        if raw.get(key, "missing") != want:
            raise BadInput(path, key, f"expected {want!r}, got {raw.get(key, 'missing')!r}")
    vocab = _field(path, raw, "vocab", list)
    d_vocab = _positive(path, raw, "d_vocab")
    if len(vocab) != d_vocab or not all(isinstance(t, str) for t in vocab):
        raise BadInput(path, "vocab", f"expected {d_vocab} token strings")
    experts: list[Expert] = []
    if model == "moe":
        for i, e in enumerate(_field(path, raw, "experts", list)):
            if not isinstance(e, dict):
                raise BadInput(path, f"experts[{i}]", "expected an object")
            experts.append(Expert(_field(path, e, "name", str), _positive(path, e, "d_mlp")))
        if not experts:
            raise BadInput(path, "experts", "the MoE model has at least one expert")
    shapes = _field(path, raw, "shapes", dict)
    for name, dims in shapes.items():
        if not isinstance(dims, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims
        ):
            raise BadInput(path, f"shapes[{name}]", f"expected a list of sizes, got {dims!r}")
    config = Config(
        model=model,
        layout=layout,
        dtype=dtype,
        d_model=_positive(path, raw, "d_model"),
        n_ctx=_positive(path, raw, "n_ctx"),
        d_head=_positive(path, raw, "d_head"),
        n_heads=_positive(path, raw, "n_heads"),
        d_mlp=_positive(path, raw, "d_mlp"),
        d_vocab=d_vocab,
        vocab=vocab,
        experts=experts,
        shapes=shapes,
        raw=raw,
    )
    for name in config.tensor_names():
        shape = config.expected_shape(name)
        if shapes.get(name) != shape:
            raise BadInput(path, f"shapes[{name}]", f"expected {shape}, got {shapes.get(name)!r}")
    return config


def _sparse(
    path: Path, name: str, flat: dict[str, torch.Tensor], shape: list[int], dtype: torch.dtype
) -> torch.Tensor:
    indices = flat.get(f"{name}.indices")
    values = flat.get(f"{name}.values")
    if indices is None or values is None:
        missing = f"{name}.indices" if indices is None else f"{name}.values"
        raise BadInput(path, missing, "missing (sparse layout)")
    if indices.dtype != torch.int64 or indices.dim() != 2 or indices.shape[0] != len(shape):
        raise BadInput(
            path,
            f"{name}.indices",
            f"expected int64 [{len(shape)}, nnz], got {indices.dtype} {list(indices.shape)}",
        )
    nnz = indices.shape[1]
    if values.dtype != dtype or list(values.shape) != [nnz]:
        raise BadInput(
            path,
            f"{name}.values",
            f"expected {dtype} [{nnz}], got {values.dtype} {list(values.shape)}",
        )
    if nnz:
        low = indices.min(dim=1).values
        high = indices.max(dim=1).values
        for axis, size in enumerate(shape):
            if low[axis] < 0 or high[axis] >= size:
                raise BadInput(path, f"{name}.indices", f"axis {axis} index out of range 0..{size}")
        # Lexicographically sorted without repeats, as the format promises: then
        # the COO tensor is coalesced as it stands and no entry is summed away.
        strides = torch.tensor(
            [int(torch.tensor(shape[a + 1 :]).prod().item()) for a in range(len(shape))],
            dtype=torch.int64,
        )
        linear = (indices * strides[:, None]).sum(dim=0)
        if nnz > 1 and not bool((linear[1:] > linear[:-1]).all()):
            raise BadInput(path, f"{name}.indices", "not lexicographically sorted and distinct")
    tensor = torch.sparse_coo_tensor(
        indices, values, size=shape, is_coalesced=True, check_invariants=True
    )
    return tensor


def read_model(directory: Path | str) -> ModelFile:
    """Read and validate a model directory; tensors keep the file's dtype and layout."""
    directory = Path(directory)
    config = read_config(directory)
    names = _read_json(directory / "names.json")
    if not isinstance(names, dict):
        raise BadInput(directory / "names.json", "", "expected a JSON object")
    path = directory / "model.safetensors"
    if not path.is_file():
        raise BadInput(path, "", "no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        flat = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise BadInput(path, "", f"not a safetensors file: {err}") from None
    if metadata.get("routecert.layout", config.layout) != config.layout:
        raise BadInput(
            path,
            "__metadata__.routecert.layout",
            f"{metadata.get('routecert.layout')!r} but config.json says {config.layout!r}",
        )
    dtype = FLOAT_DTYPES[config.dtype]
    tensors: dict[str, torch.Tensor] = {}
    for name in config.tensor_names():
        shape = config.shapes[name]
        if config.layout == "sparse":
            tensors[name] = _sparse(path, name, flat, shape, dtype)
            continue
        tensor = flat.get(name)
        if tensor is None:
            raise BadInput(path, name, "missing")
        if tensor.dtype != dtype or list(tensor.shape) != shape:
            raise BadInput(
                path,
                name,
                f"expected {config.dtype} {shape}, got {tensor.dtype} {list(tensor.shape)}",
            )
        tensors[name] = tensor
    for name, tensor in tensors.items():
        values = tensor._values() if tensor.is_sparse else tensor
        if not bool(torch.isfinite(values).all()):
            raise BadInput(path, name, "holds a non-finite value")
    return ModelFile(directory, config, names, tensors)


def as_float64(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in float64: exact, since every float of the file is a dyadic rational."""
    return tensor.to(torch.float64)
