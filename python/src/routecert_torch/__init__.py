"""Load routecert model files (docs/model-file.md) into PyTorch and TransformerLens."""

from .check import CheckResult, check
from .decisions import Decision, read_decisions
from .dense import load_hooked_transformer
from .errors import BadInput
from .layers import MoEOutput
from .modelfile import ModelFile, read_model
from .moe import RoutecertMoE

__all__ = [
    "BadInput",
    "CheckResult",
    "Decision",
    "MoEOutput",
    "ModelFile",
    "RoutecertMoE",
    "check",
    "load_hooked_transformer",
    "read_decisions",
    "read_model",
]
