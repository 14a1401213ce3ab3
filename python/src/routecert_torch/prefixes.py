"""Every prefix from as few forward passes as possible.

Attention is causal and the FFN acts per position, so the output at position
i − 1 of a sequence is the model's output on its prefix of length i: one pass
over each maximal sequence (a prefix that no other prefix extends) decides
every prefix it contains. Sequences are batched, shortest first, and padded
at the end, which the causal mask keeps from reaching any real position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Plan:
    """Which sequences to run, and where in their output each prefix is."""

    sequences: list[tuple[int, ...]]
    where: list[tuple[int, int]]
    """For prefix p: (index into ``sequences``, position of its last token)."""


def plan(prefixes: Sequence[tuple[int, ...]]) -> Plan:
    """The maximal sequences of ``prefixes`` and each prefix's place in one of them."""
    distinct = set(prefixes)
    inner = {p[:k] for p in distinct for k in range(1, len(p))}
    sequences = sorted(distinct - inner, key=lambda s: (len(s), s))
    home: dict[tuple[int, ...], tuple[int, int]] = {}
    for i, s in enumerate(sequences):
        for k in range(1, len(s) + 1):
            home.setdefault(s[:k], (i, k - 1))
    return Plan(sequences, [home[p] for p in prefixes])


@dataclass
class Outcome:
    """The forward pass on one sequence, at each of its positions."""

    top: torch.Tensor
    """[len]: the first token with the largest logit."""
    expert: torch.Tensor | None
    """[len]: the routed expert (MoE only)."""
    logits: torch.Tensor | None
    """[len, vocab]: kept only when asked for (small models)."""


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
"""Tokens [batch, pos] -> logits [batch, pos, vocab] and the routed expert [batch, pos] or None."""


def run_batched(
    sequences: Sequence[tuple[int, ...]],
    forward: Forward,
    batch_size: int,
    keep_logits: bool = False,
) -> list[Outcome]:
    """``forward`` over every sequence, ``batch_size`` at a time, reduced to what is checked.

    Only the top token (and the logits if ``keep_logits``) survive a batch, so
    memory stays that of one batch at paper scale.
    """
    out: list[Outcome] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(s) for s in chunk)
        tokens = torch.zeros(len(chunk), width, dtype=torch.int64)
        for row, s in enumerate(chunk):
            tokens[row, : len(s)] = torch.tensor(s, dtype=torch.int64)
        with torch.no_grad():
            logits, expert = forward(tokens)
        # torch.argmax returns the first maximal index (documented, and asserted in
        # the tests); which of several tied tokens it is does not matter to check.
        top = torch.argmax(logits, dim=-1)
        for row, s in enumerate(chunk):
            n = len(s)
            out.append(
                Outcome(
                    top=top[row, :n].clone(),
                    expert=None if expert is None else expert[row, :n].clone(),
                    logits=logits[row, :n].clone() if keep_logits else None,
                )
            )
    return out
