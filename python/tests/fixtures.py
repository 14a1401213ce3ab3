"""Model directories written with numpy alone, following docs/model-file.md, and a reference.

The reference forward pass is docs/model-file.md's semantics in numpy, one
prefix at a time and at its last position only, so it shares no code (and no
batching or padding) with the package under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

NP_DTYPES = {"float64": np.float64, "float32": np.float32}


def dyadic(rng: np.random.Generator, shape: tuple[int, ...], density: float = 0.5) -> np.ndarray:
    """Random multiples of 1/4 in [-2, 2], about ``density`` of them nonzero: exact in float32."""
    values = rng.integers(-8, 9, size=shape) / 4.0
    return np.where(rng.random(shape) < density, values, 0.0)


def moe_weights(
    rng: np.random.Generator,
    d_model: int = 7,
    n_ctx: int = 5,
    d_head: int = 3,
    n_heads: int = 2,
    d_vocab: int = 6,
    experts: tuple[int, ...] = (4, 3, 5),
) -> dict[str, np.ndarray]:
    w = shared_weights(rng, d_model, n_ctx, d_head, n_heads, d_vocab)
    w["blocks.0.mlp.W_gate"] = dyadic(rng, (d_model, len(experts)), 0.8)
    w["blocks.0.mlp.b_gate"] = dyadic(rng, (len(experts),))
    for e, width in enumerate(experts):
        p = f"blocks.0.mlp.experts.{e}."
        w[p + "W_in"] = dyadic(rng, (d_model, width))
        w[p + "b_in"] = dyadic(rng, (width,))
        w[p + "W_out"] = dyadic(rng, (width, d_model))
        w[p + "b_out"] = dyadic(rng, (d_model,))
    return w


def dense_weights(
    rng: np.random.Generator,
    d_model: int = 7,
    n_ctx: int = 5,
    d_head: int = 3,
    n_heads: int = 2,
    d_vocab: int = 6,
    d_mlp: int = 8,
) -> dict[str, np.ndarray]:
    w = shared_weights(rng, d_model, n_ctx, d_head, n_heads, d_vocab)
    w["blocks.0.mlp.W_in"] = dyadic(rng, (d_model, d_mlp))
    w["blocks.0.mlp.b_in"] = dyadic(rng, (d_mlp,))
    w["blocks.0.mlp.W_out"] = dyadic(rng, (d_mlp, d_model))
    w["blocks.0.mlp.b_out"] = dyadic(rng, (d_model,))
    return w


def shared_weights(
    rng: np.random.Generator, d_model: int, n_ctx: int, d_head: int, n_heads: int, d_vocab: int
) -> dict[str, np.ndarray]:
    return {
        "embed.W_E": dyadic(rng, (d_vocab, d_model)),
        "pos_embed.W_pos": dyadic(rng, (n_ctx, d_model)),
        "blocks.0.attn.W_Q": dyadic(rng, (n_heads, d_model, d_head)),
        "blocks.0.attn.W_K": dyadic(rng, (n_heads, d_model, d_head)),
        "blocks.0.attn.W_V": dyadic(rng, (n_heads, d_model, d_head)),
        "blocks.0.attn.W_O": dyadic(rng, (n_heads, d_head, d_model)),
        "blocks.0.attn.b_Q": dyadic(rng, (n_heads, d_head)),
        "blocks.0.attn.b_K": dyadic(rng, (n_heads, d_head)),
        "blocks.0.attn.b_V": dyadic(rng, (n_heads, d_head)),
        "blocks.0.attn.b_O": dyadic(rng, (d_model,)),
        "unembed.W_U": dyadic(rng, (d_model, d_vocab)),
        "unembed.b_U": dyadic(rng, (d_vocab,)),
    }


def reference(w: dict[str, np.ndarray], tokens: list[int]) -> dict[str, np.ndarray | int]:
    """docs/model-file.md's forward pass on one prefix, at its last position."""
    n = len(tokens)
    x = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][:n]
    attn = np.array(w["blocks.0.attn.b_O"], dtype=np.float64)
    patterns = []
    for h in range(w["blocks.0.attn.W_Q"].shape[0]):
        q = x[-1] @ w["blocks.0.attn.W_Q"][h] + w["blocks.0.attn.b_Q"][h]
        k = x @ w["blocks.0.attn.W_K"][h] + w["blocks.0.attn.b_K"][h]
        v = x @ w["blocks.0.attn.W_V"][h] + w["blocks.0.attn.b_V"][h]
        s = k @ q
        p = np.exp(s - s.max())
        p /= p.sum()
        patterns.append(p)
        attn = attn + (p @ v) @ w["blocks.0.attn.W_O"][h]
    a = x[-1] + attn
    out: dict[str, np.ndarray | int] = {"pattern": np.array(patterns), "resid_mid": a}
    if "blocks.0.mlp.W_gate" in w:
        g = a @ w["blocks.0.mlp.W_gate"] + w["blocks.0.mlp.b_gate"]
        e = int(np.flatnonzero(g == g.max())[0])
        prefix = f"blocks.0.mlp.experts.{e}."
        out["router"] = g
        out["expert"] = e
    else:
        prefix = "blocks.0.mlp."
    post = np.maximum(a @ w[prefix + "W_in"] + w[prefix + "b_in"], 0.0)
    ffn = post @ w[prefix + "W_out"] + w[prefix + "b_out"]
    out["post"] = post
    out["logits"] = (a + ffn) @ w["unembed.W_U"] + w["unembed.b_U"]
    return out


def write_model(
    directory: Path,
    w: dict[str, np.ndarray],
    layout: str = "dense",
    dtype: str = "float64",
    prefixes: list[list[int]] | None = None,
    spec_text: str = "# a fixture spec\n",
) -> Path:
    """A model directory for weights ``w``; decisions.json from the numpy reference."""
    directory.mkdir(parents=True, exist_ok=True)
    moe = "blocks.0.mlp.W_gate" in w
    n_heads, d_model, d_head = w["blocks.0.attn.W_Q"].shape
    d_vocab = w["embed.W_E"].shape[0]
    n_ctx = w["pos_embed.W_pos"].shape[0]
    n_experts = w["blocks.0.mlp.W_gate"].shape[1] if moe else 0
    widths = [w[f"blocks.0.mlp.experts.{e}.W_in"].shape[1] for e in range(n_experts)]
    d_mlp = max(widths) if moe else w["blocks.0.mlp.W_in"].shape[1]
    np_dtype = NP_DTYPES[dtype]
    flat: dict[str, np.ndarray] = {}
    for name, t in w.items():
        t = t.astype(np_dtype)
        if layout == "dense":
            flat[name] = t
        else:
            idx = np.array(np.nonzero(t), dtype=np.int64).reshape(t.ndim, -1)
            flat[name + ".indices"] = idx
            flat[name + ".values"] = t[tuple(idx)]
    save_file(
        flat,
        str(directory / "model.safetensors"),
        metadata={"format": "pt", "routecert.layout": layout},
    )
    vocab = [f"w{i}" for i in range(d_vocab)]
    config = {
        "n_layers": 1,
        "d_model": d_model,
        "n_ctx": n_ctx,
        "d_head": d_head,
        "n_heads": n_heads,
        "d_mlp": d_mlp,
        "d_vocab": d_vocab,
        "act_fn": "relu",
        "normalization_type": None,
        "positional_embedding_type": "standard",
        "use_attn_scale": False,
        "attn_only": False,
        "default_prepend_bos": False,
        "tokenizer_name": None,
        "format": "routecert-model/1",
        "model": "moe" if moe else "dense",
        "layout": layout,
        "dtype": dtype,
        "vocab": vocab,
        "eos_token": vocab[-1],
        "experts": [{"name": f"task{e}", "d_mlp": widths[e]} for e in range(n_experts)],
        "shapes": {name: list(t.shape) for name, t in w.items()},
    }
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "names.json").write_text(
        json.dumps({"residual": [f"r{i}" for i in range(d_model)], "heads": [], "experts": []})
    )
    spec = directory / "spec.toml"
    spec.write_text(spec_text)
    if prefixes is None:
        prefixes = all_prefixes(d_vocab, n_ctx)
    decisions = []
    for tokens in prefixes:
        r = reference(w, tokens)
        logits = np.asarray(r["logits"])
        d: dict[str, object] = {
            "text": " ".join(vocab[t] for t in tokens),
            "tokens": tokens,
            "argmax": [int(i) for i in np.flatnonzero(logits == logits.max())],
            "logits": [float(v) for v in logits],
        }
        if moe:
            d["expert"] = r["expert"]
        decisions.append(d)
    (directory / "decisions.json").write_text(
        json.dumps(
            {
                "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
                "model": config["model"],
                "prefixes": decisions,
            }
        )
    )
    return directory


def all_prefixes(d_vocab: int, n_ctx: int, seed: int = 7, count: int = 12) -> list[list[int]]:
    """Every prefix of ``count`` random sentences (shared beginnings included)."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    for _ in range(count):
        sentence = [int(t) for t in rng.integers(0, d_vocab, size=int(rng.integers(1, n_ctx + 1)))]
        for k in range(1, len(sentence) + 1):
            if sentence[:k] not in out:
                out.append(sentence[:k])
    return out
