"""routecert's exact verification against torch's float64 and float32 forward, in one run.

Both sides cover every prefix of the spec: routecert builds the model and
proves every claim exactly (`routecert verify`); torch loads the exported
weights and runs them on every prefix of decisions.json, compared with
routecert's decisions. Wall-clock times, the same machine, one after the other.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .check import CheckResult, compare, run_prefixes, torch_forward
from .decisions import read_decisions
from .modelfile import read_model


@dataclass
class TorchRun:
    """One dtype's forward over every prefix."""

    dtype: torch.dtype
    build_seconds: float
    forward_seconds: float
    result: CheckResult


@dataclass
class Bench:
    """The side-by-side measurement."""

    prefixes: int
    verify_seconds: float
    verify_exit: int
    read_seconds: float
    runs: list[TorchRun]

    def report(self) -> str:
        lines = [
            f"{self.prefixes} prefixes",
            f"routecert verify (exact): {self.verify_seconds:9.2f} s  (exit {self.verify_exit})",
            f"read model file (torch):  {self.read_seconds:9.2f} s",
        ]
        for run in self.runs:
            name = str(run.dtype).removeprefix("torch.")
            ratio = self.verify_seconds / run.forward_seconds if run.forward_seconds else 0.0
            lines.append(
                f"torch {name} forward:    {run.forward_seconds:9.2f} s  "
                f"(+{run.build_seconds:.2f} s to build the module; exact/torch = {ratio:.1f}x)"
                f"  {run.result.summary()}"
            )
        return "\n".join(lines)


def bench(
    spec: Path,
    directory: Path,
    routecert: Path,
    verify_args: list[str],
    batch_size: int = 32,
) -> Bench:
    """Time `routecert verify SPEC VERIFY_ARGS` and torch's float64 and float32 forward."""
    start = time.perf_counter()
    file = read_model(directory)
    decisions = read_decisions(directory, file.config, spec)
    read_seconds = time.perf_counter() - start

    command = [str(routecert), "verify", str(spec), "--model", file.config.model, *verify_args]
    start = time.perf_counter()
    verify = subprocess.run(command, capture_output=True, check=False)
    verify_seconds = time.perf_counter() - start

    runs: list[TorchRun] = []
    for dtype in (torch.float64, torch.float32):
        start = time.perf_counter()
        forward = torch_forward(file, dtype)
        built = time.perf_counter() - start
        start = time.perf_counter()
        placed = run_prefixes(decisions, forward, batch_size)
        result = compare(file, decisions, placed, dtype)
        runs.append(TorchRun(dtype, built, time.perf_counter() - start, result))
    return Bench(len(decisions), verify_seconds, verify.returncode, read_seconds, runs)
