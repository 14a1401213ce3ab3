"""Locating the routecert binary and exporting every construction once per session.

The binary comes from $ROUTECERT_BIN (set by .ci/run) or the repository's
target/release/routecert; when neither exists the export tests fail with a
message saying how to build it, they are never skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
CONSTRUCTIONS = sorted((REPO / "constructions").glob("*.toml"))


def routecert_bin() -> Path:
    """The routecert binary the export tests run, or a test failure naming what to do."""
    env = os.environ.get("ROUTECERT_BIN")
    path = Path(env) if env else REPO / "target" / "release" / "routecert"
    if not path.is_file():
        pytest.fail(
            f"no routecert binary at {path}: run `cargo build --release` in {REPO} "
            "or set ROUTECERT_BIN",
            pytrace=False,
        )
    help_text = subprocess.run([path, "--help"], capture_output=True, text=True).stdout
    if "export" not in help_text:
        pytest.fail(f"{path} has no `export` subcommand (issue 13's Rust side)", pytrace=False)
    return path


class Exports:
    """`routecert export SPEC -o DIR --model M`, run once per (spec, model) in a session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[tuple[str, str], Path] = {}

    def __call__(self, spec: Path, model: str, *flags: str) -> Path:
        key = (str(spec), model + " ".join(flags))
        if key not in self.done:
            out = self.root / f"{spec.stem}-{model}-{len(self.done)}"
            command = [str(routecert_bin()), "export", str(spec), "-o", str(out), "--model", model]
            run = subprocess.run([*command, *flags], capture_output=True, text=True)
            if run.returncode != 0:
                pytest.fail(
                    f"{' '.join(command)} exited {run.returncode}: {run.stderr.strip()}",
                    pytrace=False,
                )
            self.done[key] = out
        return self.done[key]


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    return Exports(tmp_path_factory.mktemp("exports"))
