#!/usr/bin/env python3
"""Regenerate the side-by-side routing table of docs/routing.md.

Runs `routecert star --json` (positional head 1, then `--head1 content`) on
every construction and on two random sets of each generator family
(`routecert generate`: default, --shared-keys, --shared-prefixes), and
prints a Markdown table. Usage, from the repository root:

    cargo build --release
    python3 scripts/routing_table.py [--bin target/release/routecert]

Standard library only; generated specs go to a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

FAMILIES: list[tuple[str, list[str]]] = [
    ("default", []),
    ("shared-keys", ["--shared-keys"]),
    ("shared-prefixes", ["--shared-prefixes"]),
]
SEEDS = [1, 2]


def star(binary: str, spec: Path, extra: list[str]) -> dict[str, Any] | None:
    out = subprocess.run(
        [binary, "star", str(spec), "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode not in (0, 1):
        sys.stderr.write(f"{spec}: {out.stderr.strip()}\n")
        return None
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def cell(line: dict[str, Any] | None) -> str:
    if line is None:
        return "-"
    d = line["decision"]
    if d == "routable":
        return f"routable, m {line['margin']:.2g}, den {line['denominator']}"
    if d == "refuted":
        inputs = line["reason"].split(" over ")[-1]
        return f"refuted ({inputs})"
    return f"undecided ({line['reason']})"


def row(name: str, pos: dict[str, Any] | None, content: dict[str, Any] | None) -> str:
    if pos is None:
        return f"| {name} | - | - | - | - | - | - | - |"
    conv = pos.get("convergence") or {}
    mix = pos["mix"] or "-"
    inter = cell(pos["interpolated"])
    if pos["mix"]:
        inter += f", s = {mix}"
    gha = f"{pos['orthonormality']:.1e} / {conv.get('captured', float('nan')):.4f}"
    return (
        f"| {name} | {pos['experts']} / {pos['features']} / {pos['inputs']} "
        f"| {cell(pos['linear'])} | {cell(content['linear'] if content else None)} "
        f"| K = {pos['rank']}: {cell(pos['structural'])} | {cell(pos['w_g_line'])} "
        f"| {inter} | {gha} |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/routecert")
    args = ap.parse_args()
    specs: list[tuple[str, Path]] = [
        (p.stem, p) for p in sorted(Path("constructions").glob("*.toml"))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for family, flags in FAMILIES:
            for seed in SEEDS:
                path = Path(tmp) / f"{family}_{seed}.toml"
                subprocess.run(
                    [args.bin, "generate", *flags, "--seed", str(seed), "-o", str(path)],
                    check=True,
                )
                specs.append((f"generate {' '.join(flags + ['--seed', str(seed)])}", path))
        print(
            "| set | experts / features / inputs | linear (positional head 1) "
            "| linear (content head 1) | STAR structural | W_g (synthesised) "
            "| STAR interpolated | GHA max|VVᵀ−I| / captured |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, path in specs:
            pos = star(args.bin, path, [])
            content = star(args.bin, path, ["--head1", "content"])
            print(row(name, pos, content))
    return 0


if __name__ == "__main__":
    sys.exit(main())
