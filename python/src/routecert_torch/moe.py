"""The MoE model of Theorem 4.2 as a plain ``torch.nn.Module`` over a model file's weights.

State-dict names are the file's (``embed.W_E``, ``blocks.0.mlp.experts.3.W_in``,
...), so ``module.state_dict()`` is the file again. The forward pass is
docs/model-file.md's semantics, computed at every position at once: attention
is causal, so position i − 1 of a sequence is exactly the prefix t_0 … t_{i−1}.
Weights are frozen parameters (requires_grad False): this module runs a
construction, it does not train one.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Block, Embed, MoEOutput, PosEmbed, Unembed
from .linear import rows
from .modelfile import ModelFile
from .moe_sparse import forward_sparse


class RoutecertMoE(nn.Module):
    """One attention layer, a linear top-1 router and one ReLU FFN expert per task."""

    def __init__(self, tensors: dict[str, torch.Tensor], n_experts: int) -> None:
        super().__init__()
        self.embed = Embed(tensors["embed.W_E"])
        self.pos_embed = PosEmbed(tensors["pos_embed.W_pos"])
        # "blocks.0.…" in the state dict, as in the file and in TransformerLens.
        self.blocks = nn.ModuleList([Block(tensors, n_experts)])
        self.unembed = Unembed(tensors["unembed.W_U"], tensors["unembed.b_U"])

    @classmethod
    def from_file(cls, file: ModelFile, dtype: torch.dtype = torch.float64) -> RoutecertMoE:
        """The MoE model of a read model file, its weights converted (exactly) to ``dtype``."""
        if file.config.model != "moe":
            raise ValueError(f"{file.directory}: config.json says model {file.config.model!r}")
        tensors = {name: t.to(dtype) for name, t in file.tensors.items()}
        return cls(tensors, len(file.config.experts))

    @property
    def block(self) -> Block:
        """The one block, typed."""
        block = self.blocks[0]
        assert isinstance(block, Block)
        return block

    def residual(self, tokens: torch.Tensor) -> torch.Tensor:
        """x_j = W_E[t_j] + W_pos[j] for tokens [batch, pos]."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return rows(self.embed.W_E, tokens) + rows(self.pos_embed.W_pos, positions)

    def forward(self, tokens: torch.Tensor) -> MoEOutput:
        """Logits, router logits and routed expert at every position of tokens [batch, pos].

        Sparse weights (the sparse layout) run moe_sparse's forward, which keeps
        the residual sparse as well; strided weights run the one below.
        """
        if self.embed.W_E.is_sparse:
            return forward_sparse(self.embed, self.pos_embed, self.block, self.unembed, tokens)
        x = self.residual(tokens)
        a = x + self.block.attn(x)
        router_logits, expert = self.block.mlp.route(a)
        logits = self.unembed(a + self.block.mlp(a, expert))
        return MoEOutput(logits, router_logits, expert)
