"""The MoE model's layers as ``torch.nn.Module`` parts, and what a forward pass returns.

Each class holds the file's tensors under their state-dict names
(``blocks.0.attn.W_Q``, ``blocks.0.mlp.experts.3.W_in``, ...). moe.py assembles
them into ``RoutecertMoE``; moe_sparse.py runs them on sparse weights. Both
import from here, so neither imports the other's types.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .linear import dense, first_max_index, head, matmul


def _frozen(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor, requires_grad=False)


class Embed(nn.Module):
    """``embed.W_E`` [d_vocab, d_model]."""

    def __init__(self, w_e: torch.Tensor) -> None:
        super().__init__()
        self.W_E = _frozen(w_e)


class PosEmbed(nn.Module):
    """``pos_embed.W_pos`` [n_ctx, d_model]: row j is routecert's position j + 1."""

    def __init__(self, w_pos: torch.Tensor) -> None:
        super().__init__()
        self.W_pos = _frozen(w_pos)


class Attention(nn.Module):
    """``blocks.0.attn``: causal softmax heads, scores q·k with no 1/sqrt(d_head)."""

    def __init__(self, t: dict[str, torch.Tensor]) -> None:
        super().__init__()
        p = "blocks.0.attn."
        self.W_Q = _frozen(t[p + "W_Q"])
        self.W_K = _frozen(t[p + "W_K"])
        self.W_V = _frozen(t[p + "W_V"])
        self.W_O = _frozen(t[p + "W_O"])
        self.b_Q = _frozen(t[p + "b_Q"])
        self.b_K = _frozen(t[p + "b_K"])
        self.b_V = _frozen(t[p + "b_V"])
        self.b_O = _frozen(t[p + "b_O"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_h softmax(q·k, causal) v W_O[h] + b_O at every position of x [batch, pos, d_model]."""
        b_q, b_k, b_v = dense(self.b_Q), dense(self.b_K), dense(self.b_V)
        n_pos = x.shape[1]
        future = torch.triu(torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device), 1)
        out = torch.zeros_like(x) + dense(self.b_O)
        for h in range(self.W_Q.shape[0]):
            q = matmul(x, head(self.W_Q, h)) + b_q[h]
            k = matmul(x, head(self.W_K, h)) + b_k[h]
            v = matmul(x, head(self.W_V, h)) + b_v[h]
            scores = (q @ k.transpose(-1, -2)).masked_fill(future, float("-inf"))
            pattern = torch.softmax(scores, dim=-1)
            out = out + matmul(pattern @ v, head(self.W_O, h))
        return out


class Expert(nn.Module):
    """``blocks.0.mlp.experts.{e}``: one ReLU FFN."""

    def __init__(self, t: dict[str, torch.Tensor], prefix: str) -> None:
        super().__init__()
        self.W_in = _frozen(t[prefix + "W_in"])
        self.b_in = _frozen(t[prefix + "b_in"])
        self.W_out = _frozen(t[prefix + "W_out"])
        self.b_out = _frozen(t[prefix + "b_out"])

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """ReLU(A'·W_in + b_in)·W_out + b_out for rows A' [n, d_model]."""
        hidden = torch.relu(matmul(a, self.W_in) + dense(self.b_in))
        return matmul(hidden, self.W_out) + dense(self.b_out)


class MoEMLP(nn.Module):
    """``blocks.0.mlp``: the linear router W_gate, b_gate and the experts."""

    def __init__(self, t: dict[str, torch.Tensor], n_experts: int) -> None:
        super().__init__()
        self.W_gate = _frozen(t["blocks.0.mlp.W_gate"])
        self.b_gate = _frozen(t["blocks.0.mlp.b_gate"])
        self.experts = nn.ModuleList(
            Expert(t, f"blocks.0.mlp.experts.{e}.") for e in range(n_experts)
        )

    def expert(self, e: int) -> Expert:
        """Expert e, typed."""
        ffn = self.experts[e]
        assert isinstance(ffn, Expert)
        return ffn

    def route(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Router logits g = A'·W_gate + b_gate and e*, the first index with the largest."""
        g = matmul(a, self.W_gate) + dense(self.b_gate)
        return g, first_max_index(g)

    def forward(self, a: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """Each position's routed expert applied to it (top-1: no other expert runs there)."""
        out = torch.zeros_like(a)
        for e, ffn in enumerate(self.experts):
            chosen = expert == e
            if bool(chosen.any()):
                out[chosen] = ffn(a[chosen])
        return out


class Block(nn.Module):
    """``blocks.0``: attention, then the routed FFN, both added to the residual."""

    def __init__(self, t: dict[str, torch.Tensor], n_experts: int) -> None:
        super().__init__()
        self.attn = Attention(t)
        self.mlp = MoEMLP(t, n_experts)


class Unembed(nn.Module):
    """``unembed.W_U`` [d_model, d_vocab], ``unembed.b_U``."""

    def __init__(self, w_u: torch.Tensor, b_u: torch.Tensor) -> None:
        super().__init__()
        self.W_U = _frozen(w_u)
        self.b_U = _frozen(b_u)

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        return matmul(resid, self.W_U) + dense(self.b_U)


@dataclass
class MoEOutput:
    """What one forward pass computes, at every position of every sequence."""

    logits: torch.Tensor
    """[batch, pos, d_vocab]: the next-token logits of each prefix."""
    router_logits: torch.Tensor
    """[batch, pos, n_experts]: g = A'·W_gate + b_gate."""
    expert: torch.Tensor
    """[batch, pos]: the routed expert e*, the first index with the largest router logit."""
