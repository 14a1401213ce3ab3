"""decisions.json: routecert's exact decision on every prefix of the spec (docs/model-file.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput
from .modelfile import Config, _read_json


@dataclass(frozen=True)
class Decision:
    """routecert's decision on one prefix."""

    text: str
    tokens: tuple[int, ...]
    expert: int | None
    """MoE: the routed expert e*; None for the dense model."""
    argmax: frozenset[int]
    """Every token with the top exact logit."""
    logits: tuple[float, ...] | None
    """The exact logits rounded to f64 (only small models carry them)."""


def spec_sha256(spec: Path) -> str:
    """The hex SHA-256 of the spec file's bytes, as routecert records it."""
    try:
        return hashlib.sha256(spec.read_bytes()).hexdigest()
    except FileNotFoundError:
        raise BadInput(spec, "", "no such file") from None
    except OSError as err:
        raise BadInput(spec, "", f"cannot read: {err.strerror}") from None


def _ints(path: Path, part: str, value: Any, bound: int) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < bound for v in value
    ):
        raise BadInput(path, part, f"expected a list of integers in 0..{bound}")
    return value


def read_decisions(directory: Path, config: Config, spec: Path | None = None) -> list[Decision]:
    """Read and validate ``directory/decisions.json`` against the config (and the spec's bytes)."""
    path = directory / "decisions.json"
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise BadInput(path, "", "expected a JSON object")
    recorded = raw.get("spec_sha256")
    if not isinstance(recorded, str):
        raise BadInput(path, "spec_sha256", "missing")
    if spec is not None:
        actual = spec_sha256(spec)
        if actual != recorded:
            raise BadInput(
                path,
                "spec_sha256",
                f"{recorded[:12]}… was exported from another spec than {spec} "
                f"(sha256 {actual[:12]}…)",
            )
    if raw.get("model") != config.model:
        raise BadInput(path, "model", f"{raw.get('model')!r} but config.json says {config.model!r}")
    prefixes = raw.get("prefixes")
    if not isinstance(prefixes, list) or not prefixes:
        raise BadInput(path, "prefixes", "expected a non-empty list")
    out: list[Decision] = []
    for i, p in enumerate(prefixes):
        part = f"prefixes[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise BadInput(path, part, "expected an object with a text")
        tokens = _ints(path, f"{part}.tokens", p.get("tokens"), config.d_vocab)
        if not 1 <= len(tokens) <= config.n_ctx:
            raise BadInput(path, f"{part}.tokens", f"expected 1..{config.n_ctx} tokens")
        expert: int | None = None
        if config.model == "moe":
            expert = _ints(path, f"{part}.expert", [p.get("expert")], len(config.experts))[0]
        argmax = _ints(path, f"{part}.argmax", p.get("argmax"), config.d_vocab)
        if not argmax:
            raise BadInput(path, f"{part}.argmax", "empty")
        logits = p.get("logits")
        if logits is not None and (
            not isinstance(logits, list)
            or len(logits) != config.d_vocab
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in logits)
        ):
            raise BadInput(path, f"{part}.logits", f"expected {config.d_vocab} numbers")
        out.append(
            Decision(
                text=p["text"],
                tokens=tuple(tokens),
                expert=expert,
                argmax=frozenset(argmax),
                logits=None if logits is None else tuple(float(v) for v in logits),
            )
        )
    return out
