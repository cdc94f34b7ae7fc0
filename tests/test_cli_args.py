"""The command line in this process, without storage or subprocesses: every command module registered
with its help and examples, the argument types (output specs, durations, kinds), redaction and the local
layout of downloads. End to end: test_cli_run.py and test_cli_transfer.py.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import string
from datetime import timedelta
from types import SimpleNamespace

import batchfiles._cli
import pytest
from batchfiles import JobOutputKind, TaskOutputKind, __version__, _errors, cli, kinds
from batchfiles._cli import common
from batchfiles._cli.get import local_target
from batchfiles._scope import Scope
from batchfiles.cli import main
from batchfiles.testing import ACCOUNT_KEY
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture
def in_process():
    """main() run here: the loggers it configures are put back afterwards (other tests' caplog needs them)."""
    loggers = [logging.getLogger(name) for name in ("batchfiles", "azure")]
    saved = [(logger, logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]
    quiet = common.quiet
    yield
    for logger, level, propagate, handlers in saved:
        logger.setLevel(level)
        logger.propagate = propagate
        logger.handlers[:] = handlers
    common.quiet = quiet


COMMANDS = [
    *("run", "save", "track", "prepare", "url", "list", "get", "logs", "view", "delete", "names"),
    "output-files",
]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_examples(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: batchfiles {name}" in out
    assert "examples:" in out


def test_main_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    stdout = capsys.readouterr().out
    for name in COMMANDS:
        assert name in stdout
    assert "exit codes:" in stdout and "75" in stdout
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert (version.value.code, capsys.readouterr().out.strip()) == (0, f"batchfiles {__version__}")


def test_no_command_prints_help_and_exits_2(in_process, capsys):
    assert main([]) == 2
    assert "usage: batchfiles" in capsys.readouterr().err


def test_every_command_module_registers_with_help_and_examples(capsys):
    """A command is a module of batchfiles._cli with NAME, SUMMARY, EPILOG, add_arguments and run, listed
    in cli.COMMANDS: every such module is listed, and each gets its subparser, its help and its handler."""
    package = batchfiles._cli
    modules = [
        importlib.import_module(f"{package.__name__}.{m.name}")
        for m in pkgutil.iter_modules(package.__path__)
    ]
    assert {m.__name__ for m in modules if hasattr(m, "NAME")} == {c.__name__ for c in cli.COMMANDS}
    assert [c.NAME for c in cli.COMMANDS] == COMMANDS
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subparsers.choices) == COMMANDS
    for command in cli.COMMANDS:
        assert subparsers.choices[command.NAME].get_default("func") is command.run
        assert "examples:" in command.EPILOG and "\n" not in command.SUMMARY
        with pytest.raises(SystemExit) as exit_:
            main([command.NAME, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: batchfiles {command.NAME}") and command.SUMMARY in out
        assert "examples:" in out and "--quiet" in out and "--debug" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*.png", ("*.png", "TaskOutput", "completion")),
        ("out/**/*.png=TaskPreview", ("out/**/*.png", "TaskPreview", "completion")),
        ("core.*=TaskLog@failure", ("core.*", "TaskLog", "failure")),
        ("result.bin@success", ("result.bin", "TaskOutput", "success")),
        ("x@Completion", ("x", "TaskOutput", "completion")),
        ("thumbs/*=$Thumbnails", ("thumbs/*", "Thumbnails", "completion")),
        ("a[@]b.txt", ("a[@]b.txt", "TaskOutput", "completion")),
    ],
)
def test_output_spec_parsing(text, expected):
    spec = common.output_spec_arg(text)
    assert (spec.pattern, spec.kind, spec.condition) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frame@2x.png", "unknown condition '2x.png'"),
        ("*.png=JobOutput", "job output kind"),
        ("*.png=taskpreview", "did you mean 'TaskPreview'"),
        ("=TaskLog", "no file pattern"),
        ("/abs/*.png", "absolute"),
    ],
)
def test_output_spec_errors(text, message):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        common.output_spec_arg(text)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1d12h", timedelta(days=1, hours=12)),
    ],
)
def test_durations(text, expected):
    assert common.duration_arg(text) == expected


@pytest.mark.parametrize("text", ["7", "", "d", "7x", "-1d", "0h", "1.5h"])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError, match="duration"):
        common.duration_arg(text)


def test_redact_removes_keys_and_signatures():
    url = "https://acct.blob.core.windows.net/job-x?sv=2024&sr=c&sig=c2VjcmV0c2lnbmF0dXJlMTIz%3D"
    _errors.register_secrets(f"AccountName=a;AccountKey={ACCOUNT_KEY};", url)
    text = _errors.redact(f"key {ACCOUNT_KEY} in AccountKey={ACCOUNT_KEY}; url {url}")
    assert ACCOUNT_KEY not in text and "c2VjcmV0c2lnbmF0dXJlMTIz" not in text
    assert "sv=2024" in _errors.redact("x?sv=2024&sig=abc")


def test_downloads_never_leave_their_folder(tmp_path):
    def ref(path: str) -> SimpleNamespace:
        return SimpleNamespace(
            file_path=path, blob_name=f"t/$TaskOutput/{path}", kind=TaskOutputKind.TASK_OUTPUT
        )

    assert local_target(tmp_path, "t", ref("a/b.png")) == tmp_path / "t" / "TaskOutput" / "a" / "b.png"
    assert local_target(tmp_path, "t", ref("../../../etc/x")) == tmp_path / "t" / "TaskOutput" / "etc" / "x"
    job_ref = SimpleNamespace(
        file_path="sheet.png", blob_name="$JobOutput/sheet.png", kind=JobOutputKind.JOB_OUTPUT
    )
    assert local_target(tmp_path, None, job_ref) == tmp_path / "JobOutput" / "sheet.png"
    with pytest.raises(ValueError, match="refusing"):
        local_target(tmp_path, "t", ref("/etc/passwd"))


KIND_TEXTS = st.one_of(
    st.sampled_from([k.text for k in (*TaskOutputKind.BUILTIN, *JobOutputKind.BUILTIN)]),
    st.sampled_from(["$TaskLog", "JobPreview", "joboutput", "Diagnostics", "TaskOutputX", "Logs"]),
    st.text(string.ascii_letters + string.digits + "-_$", min_size=1, max_size=16),
)


@given(KIND_TEXTS, st.booleans())
def test_save_and_track_pick_a_side_whose_storage_takes_the_kind(text, job_output):
    """--job-output and the kind choose the job's storage or the task's by the library's one list of
    built-in kinds: the storage chosen always takes the kind; only a task kind with --job-output is refused
    (a usage error)."""
    try:
        kind = common.kind_arg(text)
    except argparse.ArgumentTypeError:
        return
    try:
        job_side = common.job_side(kind, job_output)
    except common.UsageError as err:
        assert job_output and kinds.builtin_side(kind) == "task"
        assert "drop --job-output" in str(err)
        return
    assert job_side == (job_output or kind in [k.text for k in JobOutputKind.BUILTIN])
    Scope("job-x", None if job_side else "t1").kind(kind)  # no ValueError: the side takes the kind
