"""The package on real `routecert export` output: every construction, both models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import CONSTRUCTIONS, REPO, Exports

from routecert_torch import load_hooked_transformer, read_decisions, read_model
from routecert_torch.cli import main

RUNNING = REPO / "constructions" / "running_example.toml"


def test_every_construction_is_here() -> None:
    # The parametrised tests below run over this list; an empty glob would pass vacuously.
    assert RUNNING in CONSTRUCTIONS and len(CONSTRUCTIONS) >= 7


@pytest.mark.parametrize("model", ["moe", "dense"])
@pytest.mark.parametrize("spec", CONSTRUCTIONS, ids=lambda p: p.stem)
def test_torch_float64_agrees_with_routecert_on_every_prefix(
    export: Exports, spec: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = export(spec, model)
    n = len(json.loads((d / "decisions.json").read_text())["prefixes"])
    code = main(["check", str(spec), str(d)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"argmax in routecert's argmax set {n}/{n}" in out
    if model == "moe":
        assert f"routed expert agrees {n}/{n}" in out


def _task_of(spec: Path) -> dict[str, str]:
    """The oracle's side: each key word of the spec → its task (keys are disjoint here)."""
    tasks = tomllib.loads(spec.read_text())["task"]
    return {key: t["name"] for t in tasks for key, _ in t["pairs"]}


def test_transformer_lens_logits_are_routecerts_on_the_dense_running_example(
    export: Exports,
) -> None:
    d = export(RUNNING, "dense")
    file = read_model(d)
    decisions = read_decisions(d, file.config, RUNNING)
    tl = load_hooked_transformer(file)
    assert len(decisions) == 39
    for dec in decisions:
        assert dec.logits is not None, "decisions.json of a small model carries the logits"
        with torch.no_grad():
            logits, _ = tl.run_with_cache(torch.tensor([dec.tokens]))
        mine = logits[0, -1]
        theirs = torch.tensor(dec.logits, dtype=torch.float64)
        scale = float(theirs.abs().max())
        assert float((mine - theirs).abs().max()) <= 1e-9 * scale, dec.text


def test_hooks_show_the_circuits_of_the_dense_running_example(export: Exports) -> None:
    d = export(RUNNING, "dense")
    file = read_model(d)
    decisions = read_decisions(d, file.config, RUNNING)
    tl = load_hooked_transformer(file)
    circuits = {c["name"]: set(c["neurons"]) for c in file.config.raw["circuits"]}
    assert set(circuits) == {"located_in", "spoken_in"}
    task_of = _task_of(RUNNING)
    fired_somewhere: set[int] = set()
    for dec in decisions:
        n = len(dec.tokens)
        with torch.no_grad():
            _, cache = tl.run_with_cache(torch.tensor([dec.tokens]))
        pattern = cache["blocks.0.attn.hook_pattern"][0]
        assert pattern.shape == (file.config.n_heads, n, n)
        # Causal softmax: nothing on later positions, each row a distribution.
        assert float(torch.triu(pattern, 1).abs().max()) == 0.0
        torch.testing.assert_close(
            pattern.sum(-1), torch.ones(file.config.n_heads, n, dtype=torch.float64)
        )
        # docs/construction.md: head 1 (syntactic) weighs routecert's position j
        # (1-based) by 2^j / (2^{n+1} - 2); head 2 (key) is uniform, 1/n.
        heads = [h["name"] for h in file.names["heads"]]
        assert heads == ["head1 (syntactic)", "head2 (key)"]
        syntactic = torch.tensor(
            [2.0**j / (2.0 ** (n + 1) - 2) for j in range(1, n + 1)], dtype=torch.float64
        )
        torch.testing.assert_close(pattern[0, -1], syntactic, rtol=1e-14, atol=0)
        torch.testing.assert_close(
            pattern[1, -1], torch.full((n,), 1.0 / n, dtype=torch.float64), rtol=1e-14, atol=0
        )
        post = cache["blocks.0.mlp.hook_post"][0, -1]
        fired = {int(i) for i in torch.nonzero(post > 0).flatten()}
        # Isolation (claim I): on a prefix of task k no neuron outside C(k) fires.
        task = task_of[dec.text.split()[0]]
        assert fired <= circuits[task], (dec.text, sorted(fired - circuits[task]))
        fired_somewhere |= fired
    # Every circuit does fire on some prefix of its task.
    for name, neurons in circuits.items():
        assert fired_somewhere & neurons, name
