"""The MoE forward pass on sparse weights, with the residual stream kept sparse too.

At paper scale d_model is 37,152 while a position's residual has a few dozen
nonzero coordinates: a strided residual would make every addition touch
~300 kB per position, and the forward pass would be memory-bound a hundred
times over. Here every activation is a sparse COO matrix of shape
[features, positions] (positions of the whole batch side by side), and each
step is ``torch.sparse.mm`` of a (transposed) weight with it. The arithmetic
is the same float operations as the strided forward of moe.py, up to the
order of summation; tests compare the two on the same weights.
"""

from __future__ import annotations

import torch

from .layers import Block, Embed, MoEOutput, PosEmbed, Unembed
from .linear import first_max_index, head, transposed


def _select(rows: torch.Tensor, n_rows: int, dtype: torch.dtype) -> torch.Tensor:
    """The sparse [n_rows, len(rows)] matrix with a one at (rows[p], p): picks rows by product."""
    n = rows.shape[0]
    index = torch.stack([rows, torch.arange(n)])
    return torch.sparse_coo_tensor(
        index, torch.ones(n, dtype=dtype), (n_rows, n), check_invariants=False
    ).coalesce()


def _plus_bias(m: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """m + bias[:, None] for sparse m [k, n]; free when the bias has no nonzero (exports)."""
    b = bias.coalesce() if bias.is_sparse else bias.to_sparse()
    if b._nnz() == 0:
        return m
    ones = torch.ones(1, m.shape[1], dtype=m.dtype).to_sparse()
    out: torch.Tensor = (m + torch.sparse.mm(b.unsqueeze(1), ones)).coalesce()
    return out


def _dense_bias(m: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A strided m [k, n] (sparse or not) plus bias[:, None]."""
    d = m.to_dense() if m.is_sparse else m
    if bias.is_sparse and bias._nnz() == 0:
        return d
    b = bias.to_dense() if bias.is_sparse else bias
    return d + b[:, None]


def _mm(weight: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """weight^T @ m for a 2-D weight [n, k] and sparse m [n, positions]: sparse [k, positions]."""
    out: torch.Tensor = torch.sparse.mm(transposed(weight), m).coalesce()
    return out


def forward_sparse(
    embed: Embed, pos_embed: PosEmbed, block: Block, unembed: Unembed, tokens: torch.Tensor
) -> MoEOutput:
    """docs/model-file.md's forward pass at every position of tokens [batch, pos]."""
    batch, n_pos = tokens.shape
    n = batch * n_pos
    w_e = embed.W_E
    dtype = w_e.dtype
    flat = tokens.reshape(-1)
    positions = torch.arange(n_pos).repeat(batch)
    # x_j = W_E[t_j] + W_pos[j], one column per position.
    x = (
        torch.sparse.mm(transposed(w_e), _select(flat, w_e.shape[0], dtype))
        + torch.sparse.mm(
            transposed(pos_embed.W_pos),
            _select(positions, pos_embed.W_pos.shape[0], dtype),
        )
    ).coalesce()

    # Causal within each sequence, nothing across sequences of the batch.
    seq = torch.arange(n) // n_pos
    pos = torch.arange(n) % n_pos
    allowed = (seq[:, None] == seq[None, :]) & (pos[None, :] <= pos[:, None])

    attn = block.attn
    heads = attn.W_Q.shape[0]
    a = _plus_bias(x, attn.b_O)
    for h in range(heads):
        q = _plus_bias(_mm(head(attn.W_Q, h), x), attn.b_Q[h])
        k = _plus_bias(_mm(head(attn.W_K, h), x), attn.b_K[h])
        v = _plus_bias(_mm(head(attn.W_V, h), x), attn.b_V[h])
        scores = torch.sparse.mm(q.t().coalesce(), k).to_dense()
        pattern = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
        z = torch.sparse.mm(v, pattern.t().to_sparse()).coalesce()
        a = a + _mm(head(attn.W_O, h), z)
    a = a.coalesce()

    mlp = block.mlp
    router = _dense_bias(_mm(mlp.W_gate, a), mlp.b_gate).t()
    expert = first_max_index(router)
    resid = a
    for e in range(len(mlp.experts)):
        ffn = mlp.expert(e)
        chosen = torch.nonzero(expert == e).flatten()
        if chosen.numel() == 0:
            continue
        pick = _select(chosen, n, dtype)
        a_e = torch.sparse.mm(a, pick).coalesce()
        hidden = torch.relu(_dense_bias(_mm(ffn.W_in, a_e), ffn.b_in)).to_sparse()
        out_e = _plus_bias(_mm(ffn.W_out, hidden), ffn.b_out)
        resid = resid + torch.sparse.mm(out_e, pick.t().coalesce())
    # [d_vocab, positions]; returned as a transposed view, not copied.
    logits = _dense_bias(_mm(unembed.W_U, resid.coalesce()), unembed.b_U).t()
    return MoEOutput(
        logits.view(batch, n_pos, -1),
        router.reshape(batch, n_pos, -1),
        expert.reshape(batch, n_pos),
    )
