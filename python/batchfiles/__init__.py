"""batchfiles: the Azure Batch File Conventions for Python, with a Rust core."""

from . import naming
from .kinds import JobOutputKind, OutputKind, TaskOutputKind

__version__ = "0.1.0"

__all__ = [
    "JobOutputKind",
    "OutputKind",
    "TaskOutputKind",
    "__version__",
    "naming",
]
