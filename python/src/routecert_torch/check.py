"""Torch's forward pass against routecert's exact decisions, prefix by prefix.

routecert decides in exact arithmetic; torch runs the same weights in float.
The routed expert must be routecert's e*, and torch's top token must be one
of routecert's top tokens (a tie in exact arithmetic may break either way in
float). Each prefix where either fails is a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .decisions import Decision
from .dense import load_hooked_transformer
from .modelfile import ModelFile
from .moe import RoutecertMoE
from .prefixes import Forward, Outcome, plan, run_batched


@dataclass(frozen=True)
class Disagreement:
    """One prefix on which torch and routecert decide differently."""

    text: str
    what: str


@dataclass
class CheckResult:
    """The comparison over every prefix of decisions.json."""

    model: str
    dtype: torch.dtype
    prefixes: int = 0
    routing_agrees: int = 0
    argmax_agrees: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    logit_rel_error: float | None = None
    """Over prefixes, max_v |torch − routecert| / max_v |routecert| (when logits are given)."""

    @property
    def ok(self) -> bool:
        return not self.disagreements

    def summary(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        parts = [f"{self.prefixes} prefixes, model {self.model}, torch {dtype}"]
        if self.model == "moe":
            parts.append(f"routed expert agrees {self.routing_agrees}/{self.prefixes}")
        parts.append(f"argmax in routecert's argmax set {self.argmax_agrees}/{self.prefixes}")
        if self.logit_rel_error is not None:
            parts.append(f"largest relative logit error {self.logit_rel_error:.3e}")
        return " | ".join(parts)


def torch_forward(file: ModelFile, dtype: torch.dtype) -> Forward:
    """The forward pass of the file's model in torch: RoutecertMoE, or HookedTransformer (dense)."""
    if file.config.model == "moe":
        moe = RoutecertMoE.from_file(file, dtype)

        def run_moe(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            out = moe(tokens)
            return out.logits, out.expert

        return run_moe
    tl = load_hooked_transformer(file, dtype)

    def run_tl(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits: torch.Tensor = tl(tokens, return_type="logits")
        return logits, None

    return run_tl


def run_prefixes(
    decisions: list[Decision], forward: Forward, batch_size: int = 32, keep_logits: bool = False
) -> list[tuple[Outcome, int]]:
    """Each decision's sequence outcome and the position of its last token."""
    p = plan([d.tokens for d in decisions])
    outcomes = run_batched(p.sequences, forward, batch_size, keep_logits)
    return [(outcomes[seq], pos) for seq, pos in p.where]


def compare(
    file: ModelFile,
    decisions: list[Decision],
    placed: list[tuple[Outcome, int]],
    dtype: torch.dtype,
) -> CheckResult:
    """Count agreements and list every disagreement, naming experts and tokens."""
    vocab = file.config.vocab
    experts = file.config.experts
    result = CheckResult(model=file.config.model, dtype=dtype, prefixes=len(decisions))
    worst: float | None = None
    for d, (outcome, pos) in zip(decisions, placed, strict=True):
        problems: list[str] = []
        if d.expert is not None and outcome.expert is not None:
            routed = int(outcome.expert[pos])
            if routed == d.expert:
                result.routing_agrees += 1
            else:
                problems.append(
                    f"torch routes to expert {routed} ({experts[routed].name}), "
                    f"routecert to {d.expert} ({experts[d.expert].name})"
                )
        top = int(outcome.top[pos])
        if top in d.argmax:
            result.argmax_agrees += 1
        else:
            want = ", ".join(f"{t} ({vocab[t]!r})" for t in sorted(d.argmax))
            problems.append(
                f"torch's argmax {top} ({vocab[top]!r}) is not in routecert's argmax set {{{want}}}"
            )
        if d.logits is not None and outcome.logits is not None:
            mine = outcome.logits[pos].to(torch.float64)
            theirs = torch.tensor(d.logits, dtype=torch.float64)
            scale = float(theirs.abs().max())
            err = float((mine - theirs).abs().max()) / (scale if scale > 0 else 1.0)
            worst = err if worst is None else max(worst, err)
        for what in problems:
            result.disagreements.append(Disagreement(d.text, what))
    result.logit_rel_error = worst
    return result


def check(
    file: ModelFile,
    decisions: list[Decision],
    dtype: torch.dtype = torch.float64,
    batch_size: int = 32,
) -> CheckResult:
    """Run every prefix of ``decisions`` through torch in ``dtype`` and compare."""
    forward = torch_forward(file, dtype)
    keep = any(d.logits is not None for d in decisions)
    placed = run_prefixes(decisions, forward, batch_size, keep_logits=keep)
    return compare(file, decisions, placed, dtype)
