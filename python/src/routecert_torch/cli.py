"""The command line: `check SPEC DIR` and `bench SPEC DIR`; errors become one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from .bench import bench
from .check import check
from .decisions import read_decisions
from .errors import BadInput
from .modelfile import read_model

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is exit 2 with one line (argparse's own code, without usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"routecert_torch: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="python -m routecert_torch", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    chk = commands.add_parser(
        "check",
        help="run every prefix of DIR/decisions.json in torch and compare with routecert's",
    )
    chk.add_argument("spec", type=Path, help="the spec DIR was exported from")
    chk.add_argument("dir", type=Path, help="a `routecert export` directory")
    chk.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    chk.add_argument("--batch", type=_positive, default=32, help="sequences per forward pass")
    bch = commands.add_parser(
        "bench", help="routecert's exact verify against torch float64 and float32, side by side"
    )
    bch.add_argument("spec", type=Path)
    bch.add_argument("dir", type=Path)
    bch.add_argument(
        "--routecert",
        type=Path,
        default=Path(os.environ.get("ROUTECERT_BIN", "target/release/routecert")),
        help="the routecert binary (default $ROUTECERT_BIN or target/release/routecert)",
    )
    bch.add_argument("--batch", type=_positive, default=32)
    bch.epilog = "Flags after -- go to `routecert verify` (give those the export used)."
    return top


def main(argv: Sequence[str]) -> int:
    """Exit 0 when torch agrees on every prefix, 1 when it disagrees on one, 2 on bad input."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    argv, verify_args = argv[:split], argv[split + 1 :]
    args = parser().parse_args(argv)
    if verify_args and args.command != "bench":
        parser().error("only bench passes flags after -- (to routecert verify)")
    # TL 3.x's notice that 4.0 drops HookedTransformer (pinned below 4), and torch's
    # note that the CSR kernels behind sparse.mm are beta: neither is about the input.
    warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
    warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
    try:
        file = read_model(args.dir)
        if args.command == "check":
            decisions = read_decisions(args.dir, file.config, args.spec)
            result = check(file, decisions, DTYPES[args.dtype], args.batch)
            for d in result.disagreements:
                print(f"disagreement: {d.text!r}: {d.what}")
            print(result.summary())
            return 0 if result.ok else 1
        if not args.routecert.is_file():
            raise BadInput(args.routecert, "--routecert", "no routecert binary there")
        measured = bench(args.spec, args.dir, args.routecert, verify_args, args.batch)
        print(measured.report())
        return 0 if all(r.result.ok for r in measured.runs[:1]) else 1
    except BadInput as err:
        print(f"routecert_torch: {err}", file=sys.stderr)
        return 2
