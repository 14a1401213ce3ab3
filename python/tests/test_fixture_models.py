"""The loaders and `check` on model directories written by numpy (tests/fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import dense_weights, moe_weights, reference, write_model

from routecert_torch import RoutecertMoE, load_hooked_transformer, read_model
from routecert_torch.cli import main
from routecert_torch.linear import first_max_index


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_moe_forward_is_the_reference_on_every_prefix(tmp_path: Path, layout: str) -> None:
    w = moe_weights(np.random.default_rng(1))
    d = write_model(tmp_path / "m", w, layout=layout)
    file = read_model(d)
    assert file.tensors["blocks.0.mlp.W_gate"].is_sparse == (layout == "sparse")
    moe = RoutecertMoE.from_file(file)
    seen_experts = set()
    for p in json.loads((d / "decisions.json").read_text())["prefixes"]:
        tokens = p["tokens"]
        out = moe(torch.tensor([tokens]))
        ref = reference(w, tokens)
        np.testing.assert_allclose(out.logits[0, -1].numpy(), ref["logits"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            out.router_logits[0, -1].numpy(), ref["router"], rtol=0, atol=1e-12
        )
        assert int(out.expert[0, -1]) == ref["expert"]
        seen_experts.add(ref["expert"])
    # The fixture is only a test of routing if it routes to more than one expert.
    assert len(seen_experts) > 1


def test_state_dict_names_are_the_files(tmp_path: Path) -> None:
    w = moe_weights(np.random.default_rng(2))
    moe = RoutecertMoE.from_file(read_model(write_model(tmp_path / "m", w)))
    state = moe.state_dict()
    assert sorted(state) == sorted(w)
    for name, t in w.items():
        np.testing.assert_array_equal(state[name].numpy(), t)


def test_sparse_and_dense_layouts_give_identical_floats(tmp_path: Path) -> None:
    w = moe_weights(np.random.default_rng(3))
    a = RoutecertMoE.from_file(read_model(write_model(tmp_path / "a", w, layout="dense")))
    b = RoutecertMoE.from_file(read_model(write_model(tmp_path / "b", w, layout="sparse")))
    tokens = torch.tensor([[0, 3, 5, 1, 2], [4, 4, 0, 0, 1], [2, 2, 2, 2, 2]])
    oa, ob = a(tokens), b(tokens)
    torch.testing.assert_close(oa.router_logits, ob.router_logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(oa.logits, ob.logits, rtol=0, atol=1e-12)
    assert torch.equal(oa.expert, ob.expert)


def test_ties_go_to_the_lowest_index() -> None:
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 1.0]])
    assert first_max_index(scores).tolist() == [1, 0, 3]
    # check reads the top token with torch.argmax, relying on its documented tie rule.
    assert torch.argmax(scores, dim=-1).tolist() == [1, 0, 3]
    with pytest.raises(ValueError, match="NaN"):
        first_max_index(torch.tensor([[0.0, float("nan")]]))


def test_moe_router_tie_routes_to_the_lower_expert(tmp_path: Path) -> None:
    w = moe_weights(np.random.default_rng(4))
    # Experts 1 and 2 read the same router row and bias, larger than expert 0's.
    w["blocks.0.mlp.W_gate"][:, 0] = 0.0
    w["blocks.0.mlp.W_gate"][:, 2] = w["blocks.0.mlp.W_gate"][:, 1]
    w["blocks.0.mlp.b_gate"][:] = [-1000.0, 1000.0, 1000.0]
    moe = RoutecertMoE.from_file(read_model(write_model(tmp_path / "m", w, prefixes=[[0]])))
    out = moe(torch.tensor([[0, 1, 2, 3, 4]]))
    assert out.expert.tolist() == [[1, 1, 1, 1, 1]]


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_hooked_transformer_is_the_reference_with_its_hooks(tmp_path: Path, layout: str) -> None:
    w = dense_weights(np.random.default_rng(5))
    d = write_model(tmp_path / "d", w, layout=layout)
    tl = load_hooked_transformer(read_model(d))
    assert tl.cfg.use_attn_scale is False
    for p in json.loads((d / "decisions.json").read_text())["prefixes"]:
        tokens = p["tokens"]
        with torch.no_grad():
            logits, cache = tl.run_with_cache(torch.tensor([tokens]))
        ref = reference(w, tokens)
        np.testing.assert_allclose(logits[0, -1].numpy(), ref["logits"], rtol=0, atol=1e-12)
        pattern = cache["blocks.0.attn.hook_pattern"][0, :, -1, :].numpy()
        np.testing.assert_allclose(pattern, ref["pattern"], rtol=0, atol=1e-14)
        post = cache["blocks.0.mlp.hook_post"][0, -1].numpy()
        np.testing.assert_allclose(post, ref["post"], rtol=0, atol=1e-12)
        resid_mid = cache["blocks.0.hook_resid_mid"][0, -1].numpy()
        np.testing.assert_allclose(resid_mid, ref["resid_mid"], rtol=0, atol=1e-12)


def test_hooked_transformer_weights_are_not_processed(tmp_path: Path) -> None:
    # Uncentred W_U, an unembedding bias and writing weights with a mean: TL's
    # processing (centering, folding) would change every one of them.
    w = dense_weights(np.random.default_rng(6))
    w["unembed.W_U"] += 1.0
    w["unembed.b_U"] += 0.5
    tl = load_hooked_transformer(read_model(write_model(tmp_path / "d", w, prefixes=[[0]])))
    state = tl.state_dict()
    for name, t in w.items():
        np.testing.assert_array_equal(state[name].numpy(), t)


@pytest.mark.parametrize("model", ["moe", "dense"])
def test_check_agrees_with_reference_decisions(tmp_path: Path, model: str, capsys) -> None:
    rng = np.random.default_rng(8)
    w = moe_weights(rng) if model == "moe" else dense_weights(rng)
    d = write_model(tmp_path / "m", w, layout="sparse")
    assert main(["check", str(d / "spec.toml"), str(d)]) == 0
    out = capsys.readouterr().out
    n = len(json.loads((d / "decisions.json").read_text())["prefixes"])
    assert f"argmax in routecert's argmax set {n}/{n}" in out
    if model == "moe":
        assert f"routed expert agrees {n}/{n}" in out


def test_check_prints_each_disagreement_and_exits_1(tmp_path: Path, capsys) -> None:
    w = moe_weights(np.random.default_rng(9))
    d = write_model(tmp_path / "m", w)
    decisions = json.loads((d / "decisions.json").read_text())
    wrong = decisions["prefixes"][2]
    wrong["expert"] = (wrong["expert"] + 1) % 3
    right_top = wrong["argmax"][0]
    wrong["argmax"] = [(right_top + 1) % 6]
    (d / "decisions.json").write_text(json.dumps(decisions))
    assert main(["check", str(d / "spec.toml"), str(d)]) == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("disagreement")]
    assert len(lines) == 2
    assert all(repr(wrong["text"]) in ln for ln in lines)
    assert any("torch routes to expert" in ln for ln in lines)
    assert any(f"torch's argmax {right_top} " in ln for ln in lines)


def _break(d: Path, edit) -> None:
    config = json.loads((d / "config.json").read_text())
    edit(config)
    (d / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("spec", "spec_sha256"),
        ("shape", "shapes[unembed.W_U]"),
        ("layout", "routecert.layout"),
        ("missing", "blocks.0.attn.W_K.values"),
        ("unsorted", "not lexicographically sorted"),
        ("json", "config.json: line 1"),
        ("range", "prefixes[0].tokens"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, damage: str, needle: str, capsys) -> None:
    w = moe_weights(np.random.default_rng(10))
    d = write_model(tmp_path / "m", w, layout="sparse")
    spec = d / "spec.toml"
    if damage == "spec":
        spec = tmp_path / "other.toml"
        spec.write_text("# another spec\n")
    elif damage == "shape":
        _break(d, lambda c: c["shapes"].__setitem__("unembed.W_U", [7, 7]))
    elif damage == "layout":
        _break(d, lambda c: c.__setitem__("layout", "dense"))
    elif damage in ("missing", "unsorted"):
        from safetensors.numpy import load_file, save_file

        flat = load_file(str(d / "model.safetensors"))
        if damage == "missing":
            del flat["blocks.0.attn.W_K.values"]
        else:
            flat["embed.W_E.indices"] = flat["embed.W_E.indices"][:, ::-1].copy()
            flat["embed.W_E.values"] = flat["embed.W_E.values"][::-1].copy()
        save_file(flat, str(d / "model.safetensors"), metadata={"routecert.layout": "sparse"})
    elif damage == "json":
        (d / "config.json").write_text("{not json")
    elif damage == "range":
        decisions = json.loads((d / "decisions.json").read_text())
        decisions["prefixes"][0]["tokens"] = [99]
        (d / "decisions.json").write_text(json.dumps(decisions))
    assert main(["check", str(spec), str(d)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert needle in err
    assert str(tmp_path) in err


def test_float32_file_reads_exactly(tmp_path: Path) -> None:
    w = moe_weights(np.random.default_rng(11))
    file = read_model(write_model(tmp_path / "m", w, dtype="float32", layout="sparse"))
    assert file.tensors["embed.W_E"].dtype == torch.float32
    moe = RoutecertMoE.from_file(file, torch.float64)
    # Quarter-integers are exact in float32, so the float64 module holds the same numbers.
    np.testing.assert_array_equal(
        moe.state_dict()["unembed.W_U"].to_dense().numpy(), w["unembed.W_U"]
    )


def test_load_state_dict_reaches_the_sparse_forward(tmp_path: Path) -> None:
    # The sparse forward keeps transposes of the weights; loading other weights
    # into the same module must not leave it computing with the old ones.
    wa = moe_weights(np.random.default_rng(12))
    wb = moe_weights(np.random.default_rng(13))
    a = RoutecertMoE.from_file(read_model(write_model(tmp_path / "a", wa, layout="sparse")))
    b = RoutecertMoE.from_file(read_model(write_model(tmp_path / "b", wb, layout="sparse")))
    tokens = torch.tensor([[1, 2, 3]])
    before = a(tokens).logits
    a.load_state_dict(b.state_dict())
    after = a(tokens).logits
    np.testing.assert_allclose(after[0, -1].numpy(), reference(wb, [1, 2, 3])["logits"], atol=1e-12)
    assert not torch.equal(before, after)


def test_bench_reports_both_dtypes_side_by_side(tmp_path: Path, capsys) -> None:
    w = moe_weights(np.random.default_rng(14))
    d = write_model(tmp_path / "m", w, layout="sparse")
    n = len(json.loads((d / "decisions.json").read_text())["prefixes"])
    # A stand-in for routecert that records its arguments: bench must pass the model and flags.
    fake = tmp_path / "routecert"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "args"}\nexit 0\n')
    fake.chmod(0o755)
    spec = d / "spec.toml"
    argv = ["bench", str(spec), str(d), "--routecert", str(fake), "--", "--router", "syntactic"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "args").read_text().split() == [
        "verify",
        str(spec),
        "--model",
        "moe",
        "--router",
        "syntactic",
    ]
    assert "routecert verify (exact):" in out and "(exit 0)" in out
    assert "torch float64 forward" in out and "torch float32 forward" in out
    # Quarter-integer weights and small sums: float32 decides like float64 here.
    assert out.count(f"routed expert agrees {n}/{n}") == 2
