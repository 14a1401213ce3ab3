"""The few linear-algebra steps the forward pass needs, on strided and sparse COO tensors alike.

The sparse layout exists because the paper-scale matrices are huge and almost
empty (docs/model-file.md); these helpers keep the forward pass free of
layout cases.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch

# Derived forms of sparse weights (a head's slice, a transpose), built once per
# weight tensor and rebuilt when the tensor is modified in place (its _version
# moves). Keyed by id(); an entry dies with its tensor.
_MEMO: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], int, torch.Tensor]] = {}


def _memo(tensor: torch.Tensor, what: str, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    key = (id(tensor), what)
    hit = _MEMO.get(key)
    if hit is not None and hit[0]() is tensor and hit[1] == tensor._version:
        return hit[2]
    value = build()
    if hit is None or hit[0]() is not tensor:
        weakref.finalize(tensor, _MEMO.pop, key, None)
    _MEMO[key] = (weakref.ref(tensor), tensor._version, value)
    return value


def dense(tensor: torch.Tensor) -> torch.Tensor:
    """A strided copy of a sparse tensor; a strided tensor as it is."""
    return tensor.to_dense() if tensor.is_sparse else tensor


def rows(matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``matrix[index]`` as a strided tensor of shape ``index.shape + [cols]``."""
    flat = index.reshape(-1)
    picked = torch.index_select(matrix, 0, flat).to_dense() if matrix.is_sparse else matrix[flat]
    return picked.reshape(*index.shape, matrix.shape[1])


def head(tensor: torch.Tensor, h: int) -> torch.Tensor:
    """Head ``h``'s slice of a [n_heads, ...] tensor (sparse stays sparse)."""
    if not tensor.is_sparse:
        return tensor[h]
    return _memo(tensor, f"head {h}", lambda: tensor.select(0, h).coalesce())


def transposed(matrix: torch.Tensor) -> torch.Tensor:
    """The coalesced transpose of a sparse 2-D matrix, built once per weight."""
    return _memo(matrix, "t", lambda: matrix.t().coalesce())


def matmul(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x @ matrix`` for x of shape [..., n] and a 2-D matrix [n, m], strided or sparse."""
    if not matrix.is_sparse:
        product: torch.Tensor = x @ matrix
        return product
    flat = x.reshape(-1, x.shape[-1])
    # sparse @ dense is the product torch implements for COO: (M^T x^T)^T.
    out: torch.Tensor = torch.sparse.mm(transposed(matrix), flat.t()).t()
    return out.reshape(*x.shape[:-1], matrix.shape[1])


def first_max_index(scores: torch.Tensor) -> torch.Tensor:
    """Index of the first largest entry along the last axis: ties go to the lowest index.

    Written out rather than left to ``torch.argmax``, whose tie rule is the
    same today but is a documentation promise, not part of the contract
    routecert's top-1 routing states (docs/model-file.md).
    """
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores hold NaN")
    n = scores.shape[-1]
    best = scores.max(dim=-1, keepdim=True).values
    position = torch.arange(n, device=scores.device).expand_as(scores)
    return torch.where(scores == best, position, n).min(dim=-1).values
