"""Output kinds of the Batch File Conventions: the ``$Kind`` segment of every blob name."""

from __future__ import annotations

from typing import ClassVar

from . import _native

__all__ = ["JobOutputKind", "OutputKind", "TaskOutputKind"]


class OutputKind:
    """Base of task and job output kinds: a validated, immutable, case-sensitive text.

    ``str(kind)`` is the text (``"TaskOutput"``); two kinds are equal when they are of the same class and
    their texts are equal, case included.
    """

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"an output kind is a str, not {type(text).__name__}")
        _native.validate_kind(text)
        self._text = text

    @classmethod
    def custom(cls, text: str):
        """A kind of your own, e.g. ``TaskOutputKind.custom("Thumbnails")``."""
        return cls(text)

    @property
    def text(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._text == self._text  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._text))

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, "_text"):
            raise AttributeError(f"{type(self).__name__} is immutable")
        super().__setattr__(name, value)


class TaskOutputKind(OutputKind):
    """Kinds of a task's outputs, stored under ``{task_id}/$Kind/``."""

    __slots__ = ()
    TASK_OUTPUT: ClassVar[TaskOutputKind]
    TASK_PREVIEW: ClassVar[TaskOutputKind]
    TASK_LOG: ClassVar[TaskOutputKind]
    TASK_INTERMEDIATE: ClassVar[TaskOutputKind]
    #: The built-in task kinds, in the order above.
    BUILTIN: ClassVar[tuple[TaskOutputKind, ...]]


class JobOutputKind(OutputKind):
    """Kinds of a job's own outputs, stored under ``$Kind/``."""

    __slots__ = ()
    JOB_OUTPUT: ClassVar[JobOutputKind]
    JOB_PREVIEW: ClassVar[JobOutputKind]
    #: The built-in job kinds.
    BUILTIN: ClassVar[tuple[JobOutputKind, ...]]


TaskOutputKind.TASK_OUTPUT = TaskOutputKind("TaskOutput")
TaskOutputKind.TASK_PREVIEW = TaskOutputKind("TaskPreview")
TaskOutputKind.TASK_LOG = TaskOutputKind("TaskLog")
TaskOutputKind.TASK_INTERMEDIATE = TaskOutputKind("TaskIntermediate")
JobOutputKind.JOB_OUTPUT = JobOutputKind("JobOutput")
JobOutputKind.JOB_PREVIEW = JobOutputKind("JobPreview")
TaskOutputKind.BUILTIN = (
    TaskOutputKind.TASK_OUTPUT,
    TaskOutputKind.TASK_PREVIEW,
    TaskOutputKind.TASK_LOG,
    TaskOutputKind.TASK_INTERMEDIATE,
)
JobOutputKind.BUILTIN = (JobOutputKind.JOB_OUTPUT, JobOutputKind.JOB_PREVIEW)

KindLike = OutputKind | str

_BUILTIN_SIDES = {
    **{kind.text: "task" for kind in TaskOutputKind.BUILTIN},
    **{kind.text: "job" for kind in JobOutputKind.BUILTIN},
}


def builtin_side(text: str | None) -> str | None:
    """``"task"`` or ``"job"`` when ``text`` is a built-in kind of that side (case-sensitive: ``TaskLog``,
    not ``tasklog``); None for any other text (a custom kind, usable on either side) or None."""
    return _BUILTIN_SIDES.get(text) if isinstance(text, str) else None


def parse_kind(text: str) -> str:
    """The text of a kind as typed by a user: ``$TaskOutput`` (as in blob names) is ``TaskOutput``. Kinds are
    case-sensitive, so ``taskoutput`` (a custom kind nobody would find) is refused with a hint: ValueError."""
    text = text[1:] if text.startswith("$") else text
    OutputKind(text)
    for builtin in (*TaskOutputKind.BUILTIN, *JobOutputKind.BUILTIN):
        if text != builtin.text and text.lower() == builtin.text.lower():
            raise ValueError(f"kinds are case-sensitive: did you mean {builtin.text!r}?")
    return text


def kind_text(kind: KindLike) -> str:
    """The text of a kind given as a kind object or as its text."""
    if isinstance(kind, OutputKind):
        return kind.text
    if isinstance(kind, str):
        return kind
    raise TypeError(f"kind must be an OutputKind or a str, not {type(kind).__name__}")
