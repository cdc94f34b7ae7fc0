"""Tracked saves without their drivers: the engine (it asks for storage calls and file reads and makes
none, but for opening the file when it is built) and what the sync and async drivers share.

Modules: :mod:`.limits` (numbers and metadata keys), :mod:`.calls` (storage calls, file reads, step runner),
:mod:`.schedule` (when which step is due; pure), :mod:`.parts` (opening, resume, roll-over, ETag chain),
:mod:`.appender` (each block appended exactly once), :mod:`.engine` (composes them), :mod:`.save` (the
drivers' shared base). The drivers and tests use the names below.
"""

from .calls import BlobMethod, Call, FileCall, StepRunner, Steps, drive
from .engine import Engine, Stats
from .save import TrackedSaveBase
from .schedule import Outcome, Schedule, Step

__all__ = [
    "BlobMethod",
    "Call",
    "Engine",
    "FileCall",
    "Outcome",
    "Schedule",
    "Stats",
    "Step",
    "StepRunner",
    "Steps",
    "TrackedSaveBase",
    "drive",
]
