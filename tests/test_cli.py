"""The ``batchfiles`` command line, run as a subprocess (``python -m batchfiles``) against Azurite.

Exit codes and @success/@failure/@completion outputs, live logs while the command runs, signal
forwarding, JSON listing, download layout and MD5 check, one-line errors without secrets, and progress
bars drawn on a pseudo-terminal but not in a pipe. Argument parsing details are tested in-process.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urlsplit

import hostile
import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings
from batchfiles import (
    JobOutputKind,
    JobOutputStorage,
    OutputNotFoundError,
    TaskOutputKind,
    TaskOutputStorage,
    __version__,
    naming,
    prepare_output_storage,
)
from batchfiles._cli import common
from batchfiles._cli.get import local_target
from batchfiles.cli import main
from batchfiles.testing import ACCOUNT_KEY, Azurite

TASK = "task-1"
#: Upper bound of any wait in these tests; never asserted as a duration.
PATIENCE = 30.0
ENV_PREFIXES = ("AZ_BATCH_", "BATCHFILES_", "AZURE_STORAGE_", "AZURE_CLIENT_", "AZURE_TENANT_")


# --- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture
def env(azurite: Azurite, job_id: str) -> dict[str, str]:
    """A Batch node's environment: job and task ids, and storage through a connection string."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    return {
        **clean,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AZ_BATCH_JOB_ID": job_id,
        "AZ_BATCH_TASK_ID": TASK,
    }


@pytest.fixture
def bare_env() -> dict[str, str]:
    """No storage and no ids at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}


@pytest.fixture
def prepared(service: BlobServiceClient, job_id: str) -> str:
    prepare_output_storage(service, job_id)
    return job_id


@pytest.fixture
def task_storage(azurite: Azurite, prepared: str):
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, TASK) as storage:
        yield storage


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchfiles", *args]


def cli(*args: str, env: dict[str, str], cwd: Path | None = None, stdin: str | None = None):
    """Run the command line to its end; stdout and stderr as text."""
    return subprocess.run(
        command(*args),
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_for(condition: Callable[[], object], what: str) -> object:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def blob_text(storage: TaskOutputStorage, kind: str, path: str) -> str:
    try:
        return storage.get(kind, path).download_text()
    except OutputNotFoundError:
        return ""


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("batchfiles: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def read_or_empty(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def write_script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


# --- help, version, parsing ---------------------------------------------------------------------------------

COMMANDS = ["run", "save", "track", "prepare", "url", "list", "get", "names"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_examples(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: batchfiles {name}" in out
    assert "examples:" in out


def test_main_help_and_version(bare_env):
    result = cli("--help", env=bare_env)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    assert "exit codes:" in result.stdout and "75" in result.stdout
    version = cli("--version", env=bare_env)
    assert (version.returncode, version.stdout.strip()) == (0, f"batchfiles {__version__}")


def test_no_command_prints_help_and_exits_2(bare_env):
    result = cli(env=bare_env)
    assert result.returncode == 2
    assert "usage: batchfiles" in result.stderr


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
    common.register_secrets(f"AccountName=a;AccountKey={ACCOUNT_KEY};", url)
    text = common.redact(f"key {ACCOUNT_KEY} in AccountKey={ACCOUNT_KEY}; url {url}")
    assert ACCOUNT_KEY not in text and "c2VjcmV0c2lnbmF0dXJlMTIz" not in text
    assert "sv=2024" in common.redact("x?sv=2024&sig=abc")


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


# --- prepare, url, names ------------------------------------------------------------------------------------


def test_prepare_prints_the_container_and_url_gives_a_working_sas(env, job_id, service, tmp_path):
    result = cli("prepare", job_id, env=env)
    assert (result.returncode, result.stdout) == (0, naming.container_name(job_id) + "\n")
    assert service.get_container_client(naming.container_name(job_id)).exists()

    result = cli("url", job_id, "--expiry", "12h", env=env)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    query = parse_qs(urlsplit(url).query)
    start, expiry = (datetime.fromisoformat(query[k][0].replace("Z", "+00:00")) for k in ("st", "se"))
    assert expiry - start == timedelta(hours=12, minutes=5)  # the start allows 5 minutes of clock skew
    assert query["sp"] == ["racwl"]

    # The URL is all a task needs: no connection string, no job id.
    task_env = {
        k: v for k, v in env.items() if k not in ("AZURE_STORAGE_CONNECTION_STRING", "AZ_BATCH_JOB_ID")
    }
    (tmp_path / "hello.txt").write_text("hello")
    task_env["BATCHFILES_CONTAINER_URL"] = url
    saved = cli("save", "TaskOutput", "hello.txt", env=task_env, cwd=tmp_path)
    assert (saved.returncode, saved.stdout) == (0, f"{TASK}/$TaskOutput/hello.txt\n"), saved.stderr
    sig = query["sig"][0]
    assert sig not in saved.stdout + saved.stderr
    other = cli("save", "TaskOutput", "hello.txt", "--job", "other-job", env=task_env, cwd=tmp_path)
    assert_one_line_error(other, 1, "BATCHFILES_CONTAINER_URL is for container", "--job is 'other-job'")


def test_url_warns_when_the_container_is_not_prepared(env, job_id):
    result = cli("url", job_id, env=env)
    assert result.returncode == 0
    assert "does not exist yet" in result.stderr and f"batchfiles prepare {job_id}" in result.stderr


def test_names_from_arguments_and_stdin(bare_env):
    ids = ["MyJob", "my_job-bob"]
    expected = "".join(name + "\n" for name in naming.container_names(ids))
    assert cli("names", *ids, env=bare_env).stdout == expected
    assert cli("names", env=bare_env, stdin="MyJob\n\nmy_job-bob\r\n").stdout == expected
    assert_one_line_error(cli("names", "ok", "a b", env=bare_env), 1, "invalid character")


# --- save, list, get ----------------------------------------------------------------------------------------


def test_save_files_patterns_dest_and_job_outputs(env, prepared, task_storage, azurite, tmp_path):
    (tmp_path / "frames").mkdir()
    for i in range(3):
        (tmp_path / "frames" / f"{i}.png").write_bytes(b"png%d" % i)
    (tmp_path / "result.bin").write_bytes(b"result")
    result = cli("save", "TaskOutput", "result.bin", "frames/*.png", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        f"{TASK}/$TaskOutput/result.bin",
        *(f"{TASK}/$TaskOutput/frames/{i}.png" for i in range(3)),
    ]
    result = cli(
        "save", "TaskPreview", str(tmp_path / "result.bin"), "--dest", "p/r.bin", env=env, cwd=tmp_path
    )
    assert result.stdout.split() == [f"{TASK}/$TaskPreview/p/r.bin"], result.stderr
    result = cli("save", "JobOutput", "result.bin", env=env, cwd=tmp_path)
    assert result.stdout.split() == ["$JobOutput/result.bin"], result.stderr
    assert task_storage.get("TaskOutput", "frames/2.png").download_bytes() == b"png2"

    errors = [
        (cli("save", "TaskOutput", "missing.bin", env=env, cwd=tmp_path), 1, "no such file"),
        (cli("save", "TaskOutput", "*.nothing", env=env, cwd=tmp_path), 1, "no file matches"),
        (cli("save", "TaskOutput", "frames", env=env, cwd=tmp_path), 1, "is a folder"),
        (
            cli("save", "TaskOutput", "frames/*", "--dest", "x", env=env, cwd=tmp_path),
            2,
            "--dest names one file",
        ),
        (cli("save", "taskoutput", "result.bin", env=env, cwd=tmp_path), 2, "did you mean 'TaskOutput'"),
    ]
    for result, code, needle in errors:
        assert_one_line_error(result, code, needle)


def test_save_never_loses_a_file_to_another_of_the_same_name(env, prepared, task_storage, tmp_path):
    """``a/b.txt`` and a file named ``a\\b.txt`` (or ``../x.txt`` and ``x.txt``) are one blob: refused."""
    work = tmp_path / "work"
    (work / "a").mkdir(parents=True)
    (work / "a" / "b.txt").write_text("slash")
    (work / "a\\b.txt").write_text("backslash")
    (work / "x.txt").write_text("x here")
    (tmp_path / "x.txt").write_text("x above")
    result = cli("save", "TaskOutput", "**/*.txt", "*.txt", env=env, cwd=work)
    assert_one_line_error(result, 1, "'a/b.txt' and 'a\\\\b.txt' would both be saved as 'a/b.txt'")
    result = cli("save", "TaskOutput", "../x.txt", "x.txt", env=env, cwd=work)
    assert_one_line_error(result, 1, "'../x.txt' and 'x.txt' would both be saved as 'x.txt'")
    result = cli("save", "TaskOutput", str(tmp_path / "x.txt"), "x.txt", env=env, cwd=work)
    assert_one_line_error(result, 1, "would both be saved as 'x.txt'")
    result = cli("save", "TaskOutput", "../*.txt", env=env, cwd=work)
    assert_one_line_error(result, 1, "'../*.txt'", "may not climb above it")
    assert list(task_storage.list()) == []  # nothing was saved

    result = cli("save", "TaskOutput", "x.txt", "./x.txt", "x*.txt", "a/b.txt", env=env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{TASK}/$TaskOutput/x.txt", f"{TASK}/$TaskOutput/a/b.txt"]
    assert "saved 2 files" in result.stderr
    result = cli("save", "TaskLog", "../x.txt", env=env, cwd=work)  # one file: saved under x.txt
    assert result.stdout.split() == [f"{TASK}/$TaskLog/x.txt"], result.stderr
    assert task_storage.get("TaskLog", "x.txt").download_text() == "x above"


def test_save_patterns_stay_in_the_working_directory(env, prepared, task_storage, tmp_path):
    work = tmp_path / "work"
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("key")
    (work / "d").mkdir(parents=True)
    (work / "d" / "x.txt").write_text("x")
    os.symlink("../secret", work / "linkdir")
    os.symlink("..", work / "d" / "up")
    os.symlink("..", work / "d" / "me")
    result = cli("save", "TaskOutput", "**/*.txt", env=env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{TASK}/$TaskOutput/d/x.txt"]
    assert "batchfiles: warning: skipped linkdir: it links outside base_dir" in result.stderr
    assert "saved 1 file" in result.stderr


def test_list_table_and_json(env, prepared, azurite, tmp_path):
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, "t2") as t2:
        t2.save_bytes("TaskOutput", b"x" * 2048, "frames/1.png")
        t2.save_text("TaskLog", "log line\n", "stdout.txt")
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, "t1") as t1:
        t1.save_bytes("TaskOutput", b"abc", "a.txt")
    with JobOutputStorage.from_connection_string(azurite.connection_string, prepared) as job:
        job.save_bytes("JobOutput", b"sheet", "sheet.png")

    table = cli("list", prepared, env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TASK", "KIND", "PATH", "SIZE", "MODIFIED", "(UTC)"]
    rows = [line.split()[:3] for line in lines[1:]]
    assert rows == [
        ["(job)", "JobOutput", "sheet.png"],
        ["t1", "TaskOutput", "a.txt"],
        ["t2", "TaskLog", "stdout.txt"],
        ["t2", "TaskOutput", "frames/1.png"],
    ]
    assert "2.0 KiB" in lines[4]

    records = [json.loads(line) for line in cli("list", prepared, "--json", env=env).stdout.splitlines()]
    assert [(r["task"], r["kind"], r["path"]) for r in records] == [
        (None, "JobOutput", "sheet.png"),
        ("t1", "TaskOutput", "a.txt"),
        ("t2", "TaskLog", "stdout.txt"),
        ("t2", "TaskOutput", "frames/1.png"),
    ]
    frame = records[3]
    assert frame["job"] == prepared and frame["size"] == 2048
    assert base64.b64decode(frame["content_md5"]) == hashlib.md5(b"x" * 2048).digest()
    assert datetime.fromisoformat(frame["last_modified"]).tzinfo is not None
    assert frame["url"].endswith("/t2/%24TaskOutput/frames/1.png") and "?" not in frame["url"]
    assert frame["blob"] == "t2/$TaskOutput/frames/1.png"

    only = cli("list", prepared, "--task", "t2", "--kind", "TaskLog", "--json", env=env).stdout.splitlines()
    assert [json.loads(line)["path"] for line in only] == ["stdout.txt"]
    jobs_only = cli("list", prepared, "--kind", "JobOutput", "--json", env=env).stdout.splitlines()
    assert [json.loads(line)["path"] for line in jobs_only] == ["sheet.png"]
    empty = cli("list", prepared, "--task", "nobody", env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert "no outputs" in empty.stderr


def test_get_layout_and_md5_check(env, prepared, azurite, service, tmp_path):
    payload = os.urandom(300_000)
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, "t1") as t1:
        t1.save_bytes("TaskOutput", payload, "frames/0001.png")
        t1.save_text("TaskLog", "t1 says hi\n", "stdout.txt")
    with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, "t2") as t2:
        t2.save_text("TaskLog", "t2 says hi\n", "stdout.txt")
    with JobOutputStorage.from_connection_string(azurite.connection_string, prepared) as job:
        job.save_bytes("JobOutput", b"sheet", "sheet.png")

    out = tmp_path / "all"
    result = cli("get", prepared, "-o", str(out), env=env)
    assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "JobOutput/sheet.png",
        "t1/TaskLog/stdout.txt",
        "t1/TaskOutput/frames/0001.png",
        "t2/TaskLog/stdout.txt",
    ]
    assert sorted(result.stdout.split()) == sorted(str(out / f) for f in files)
    assert (out / "t1/TaskOutput/frames/0001.png").read_bytes() == payload

    # One file, with options after the positionals; every task's stderr.txt by path and kind.
    one = cli(
        "get",
        prepared,
        "frames/0001.png",
        "--task",
        "t1",
        "--kind",
        "TaskOutput",
        "-o",
        str(tmp_path / "one"),
        env=env,
    )
    assert one.returncode == 0, one.stderr
    assert (tmp_path / "one/t1/TaskOutput/frames/0001.png").read_bytes() == payload
    logs = cli("get", prepared, "stdout.txt", "--kind", "TaskLog", "-o", str(tmp_path / "logs"), env=env)
    assert logs.returncode == 0, logs.stderr
    assert (tmp_path / "logs/t2/TaskLog/stdout.txt").read_text() == "t2 says hi\n"
    assert_one_line_error(cli("get", prepared, "nothing.png", env=env), 1, "no output 'nothing.png'")

    # A blob whose bytes do not match its stored MD5: an error, and no file left behind.
    blob = service.get_blob_client(naming.container_name(prepared), "t1/$TaskOutput/frames/0001.png")
    blob.set_http_headers(
        ContentSettings(content_type="image/png", content_md5=bytearray(hashlib.md5(b"x").digest()))
    )
    bad = tmp_path / "bad"
    result = cli("get", prepared, "--task", "t1", "--kind", "TaskOutput", "-o", str(bad), env=env)
    assert result.returncode == 1
    assert "Content-MD5" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in bad.rglob("*") if p.is_file()]


def test_get_skips_blobs_that_are_not_outputs_and_downloads_the_rest(env, prepared, service, tmp_path):
    """Blobs a task with the job's SAS could write: each is reported on one line, the rest is downloaded."""
    url = hostile.sas_url(service, prepared)
    long_name = "n" * 246 + ".bin"
    outputs = {
        "t1/$TaskOutput/b": "t1/TaskOutput/b",
        f"t1/$TaskOutput/{long_name}": f"t1/TaskOutput/{long_name}",
        "t2/$TaskLog/x": "t2/TaskLog/x",
        "$JobOutput/sheet.png": "JobOutput/sheet.png",
    }
    not_outputs = {
        "t1/$TaskOutput/../../../loot.txt": "its file path has a '..' segment",
        "t1/$TaskOutput/q/../b": "its file path has a '..' segment",
        "t2/$TaskLog/./x": "its file path has a '.' segment",
        "$JobOutput/../../y": "its file path has a '..' segment",
    }
    same_target = ["t1/$TaskOutput/c", "$t1/TaskOutput/c"]  # a job kind named like a task: one local file
    for name in [*outputs, *not_outputs, *same_target]:
        assert hostile.put(url, name, name.encode()) == 201, name

    out = tmp_path / "deep" / "out"
    result = cli("get", prepared, "-o", str(out), env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("batchfiles: error: ")]
    skipped = sorted(line for line in errors if line.startswith("batchfiles: error: skipped blob "))
    expected = [f"batchfiles: error: skipped blob {name!r}: {why}" for name, why in not_outputs.items()]
    collisions = [line for line in skipped if "would all be saved as" in line]
    assert len(collisions) == 2
    assert sorted(set(skipped) - set(collisions)) == sorted(expected)
    assert errors[-1] == "batchfiles: error: 6 blobs skipped (see above)"
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"deep/out/{local}" for local in outputs.values())
    for name, local in outputs.items():
        assert (out / local).read_bytes() == name.encode()

    listing = cli("list", prepared, env=env)
    assert listing.returncode == 0, listing.stderr
    warnings = sorted(
        line for line in listing.stderr.splitlines() if line.startswith("batchfiles: warning: ")
    )
    assert warnings == sorted(
        f"batchfiles: warning: skipped blob {name!r}: {why}" for name, why in not_outputs.items()
    )
    assert "../" not in listing.stdout and long_name in listing.stdout

    # One output named exactly: a dot segment is refused, not resolved to another blob.
    one = cli("get", prepared, "q/../b", "--task", "t1", "--kind", "TaskOutput", "-o", str(out), env=env)
    assert_one_line_error(one, 1, "'.' or '..' segment")


# --- run ----------------------------------------------------------------------------------------------------

CHILD = """\
import sys
from pathlib import Path
Path("result.bin").write_text("result")
Path("core.1").write_text("core dump")
Path("report.txt").write_text("report")
print("to stdout")
print("to stderr", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize(
    ("code", "saved"), [(0, {"result.bin", "report.txt"}), (3, {"core.1", "report.txt"})]
)
def test_run_saves_logs_and_the_outputs_whose_condition_holds(
    env, prepared, task_storage, tmp_path, code, saved
):
    write_script(tmp_path, "child.py", CHILD)
    outputs = [
        "--output",
        "result.bin@success",
        "--output",
        "core.*=Diagnostics@failure",
        "--output",
        "report.txt",
    ]
    result = cli("run", *outputs, "--", sys.executable, "child.py", str(code), env=env, cwd=tmp_path)

    assert result.returncode == code, result.stderr
    assert result.stdout == "to stdout\n"  # the console still gets the command's output
    assert result.stderr.startswith("to stderr\n")
    assert (tmp_path / "stdout.txt").read_text() == "to stdout\n"
    assert blob_text(task_storage, "TaskLog", "stdout.txt") == "to stdout\n"
    assert blob_text(task_storage, "TaskLog", "stderr.txt") == "to stderr\n"
    found = {ref.file_path for kind in ("TaskOutput", "Diagnostics") for ref in task_storage.list(kind)}
    assert found == saved
    assert f"the command exited with {code}" in result.stderr


def test_run_without_dashes_and_a_missing_command(env, prepared, task_storage, tmp_path):
    result = cli("run", sys.executable, "-c", "print('plain')", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "plain\n"), result.stderr

    result = cli("run", "--output", "*.txt@failure", "--", "no-such-command-xyz", env=env, cwd=tmp_path)
    assert result.returncode == 127
    assert "cannot run 'no-such-command-xyz'" in result.stderr
    assert "cannot run" in blob_text(task_storage, "TaskLog", "stderr.txt")  # why, in the task's log

    assert_one_line_error(cli("run", env=env, cwd=tmp_path), 2, "no command to run")
    assert_one_line_error(
        cli("run", "--output", "x@sometimes", "--", "true", env=env), 2, "unknown condition"
    )


def test_run_log_is_live_while_the_command_runs(env, prepared, task_storage, tmp_path):
    write_script(
        tmp_path,
        "slow.py",
        """\
        import os, sys, time
        print("first line", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.05)
        print("last line", flush=True)
        """,
    )
    proc = subprocess.Popen(
        command("run", "--flush-interval", "0.2", "--", sys.executable, "slow.py"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: "first line" in blob_text(task_storage, "TaskLog", "stdout.txt"), "the live log")
        assert proc.poll() is None  # still running: the log was saved live
        (tmp_path / "go").touch()
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        proc.kill()
        proc.wait()
    assert blob_text(task_storage, "TaskLog", "stdout.txt") == "first line\nlast line\n"


TRAPPING_CHILD = """\
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    Path("marker").write_text(signal.Signals(signum).name)
    print("stopping on", signal.Signals(signum).name, flush=True)
    sys.exit(42)
if sys.argv[1] == "trap":
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("signum", "mode", "code"),
    [
        (signal.SIGTERM, "trap", 42),
        (signal.SIGINT, "trap", 42),
        (signal.SIGTERM, "die", 128 + signal.SIGTERM),
    ],
)
def test_run_forwards_signals(env, prepared, task_storage, tmp_path, signum, mode, code):
    write_script(tmp_path, "child.py", TRAPPING_CHILD)
    proc = subprocess.Popen(
        command("run", "--output", "marker@failure", "--", sys.executable, "child.py", mode),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: "ready" in read_or_empty(tmp_path / "stdout.txt"), "the child to be ready")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, err
    if mode == "trap":
        assert (tmp_path / "marker").read_text() == signal.Signals(signum).name
        assert "stopping on" in blob_text(
            task_storage, "TaskLog", "stdout.txt"
        )  # logs saved after the signal
        assert task_storage.get("TaskOutput", "marker").download_text() == signal.Signals(signum).name
    else:
        assert f"the command exited with {code}" in err


def test_run_exits_75_when_it_cannot_save(env, prepared, task_storage, tmp_path):
    """The command succeeds but the container is gone by the time it ends: never a silent 0."""
    write_script(
        tmp_path,
        "vandal.py",
        f"""\
        import os
        from azure.storage.blob import ContainerClient
        open("result.bin", "w").write("result")
        print("deleting the container", flush=True)
        ContainerClient.from_connection_string(
            os.environ["AZURE_STORAGE_CONNECTION_STRING"], {naming.container_name(prepared)!r}
        ).delete_container()
        """,
    )
    result = cli("run", "--output", "result.bin", "--", sys.executable, "vandal.py", env=env, cwd=tmp_path)
    assert result.returncode == 75, result.stderr
    assert "(the command exited with 0)" in result.stderr
    assert "result.bin" in result.stderr and "Traceback" not in result.stderr


def test_run_reports_outputs_it_cannot_save_and_saves_the_rest(env, prepared, task_storage, tmp_path):
    """Two --output patterns of one kind give one blob to two files; another climbs out; two link loops."""
    work = tmp_path / "work"
    (work / "a").mkdir(parents=True)
    (work / "a" / "b.dat").write_text("slash")
    (work / "a\\b.dat").write_text("backslash")
    (work / "c.dat").write_text("c")
    (work / "d").mkdir()
    (work / "d" / "x.dat").write_text("x")
    os.symlink("..", work / "d" / "up")
    os.symlink("..", work / "a" / "up")
    (tmp_path / "above.dat").write_text("above")
    outputs = ["--output", "a/*.dat", "--output", "*.dat", "--output", "**/x.dat=TaskPreview"]
    outputs += ["--output", "../*.dat=TaskLog"]
    result = cli("run", *outputs, "--", sys.executable, "-c", "pass", env=env, cwd=work)
    assert result.returncode == 75, result.stderr
    assert "'a/b.dat' and 'a\\\\b.dat' would both be saved as 'task-1/$TaskOutput/a/b.dat'" in result.stderr
    assert (
        "'../*.dat=TaskLog@completion' not saved: pattern '../*.dat' climbs above base_dir" in result.stderr
    )
    assert "(the command exited with 0)" in result.stderr and "Traceback" not in result.stderr
    assert sorted(r.file_path for r in task_storage.list("TaskOutput")) == ["c.dat"]
    preview = sorted(r.file_path for r in task_storage.list("TaskPreview"))
    assert preview == ["d/x.dat"]  # **: each folder once, though the loops
    assert [r.file_path for r in task_storage.list("TaskLog")] == ["stderr.txt", "stdout.txt"]


def test_run_on_an_unprepared_job_does_not_start_the_command(env, job_id, tmp_path):
    result = cli("run", "--", sys.executable, "-c", "open('ran', 'w')", env=env, cwd=tmp_path)
    assert_one_line_error(result, 1, "does not exist", "batchfiles prepare")
    assert not (tmp_path / "ran").exists()


def test_a_second_run_in_the_same_directory_is_refused(env, prepared, task_storage, tmp_path):
    """Two runs of one task in one directory, 50 ms apart: one runs and saves its logs; the other refuses
    at once, without running its command or touching the logs (before the lock, each emptied the other's
    stdout.txt and both exited 0 with a blob holding either or neither)."""
    write_script(
        tmp_path,
        "talk.py",
        """\
        import sys, time
        from pathlib import Path
        Path(f"ran-{sys.argv[1]}").touch()
        for i in range(20):
            print(f"{sys.argv[1]} says {i}", flush=True)
            time.sleep(0.05)
        """,
    )
    procs = {}
    for name in ("first", "second"):
        procs[name] = subprocess.Popen(
            command("run", "--flush-interval", "0.2", "--", sys.executable, "talk.py", name),
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.05)
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=PATIENCE)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    (winner,) = [name for name, result in results.items() if result.returncode == 0]  # nearly always first
    (loser,) = set(results) - {winner}
    assert_one_line_error(
        results[loser],
        1,
        f"another `batchfiles run` is writing stdout.txt in {tmp_path}: run each task in its own working",
    )
    assert not (tmp_path / f"ran-{loser}").exists()
    said = "".join(f"{winner} says {i}\n" for i in range(20))
    assert (tmp_path / "stdout.txt").read_text() == said
    assert blob_text(task_storage, "TaskLog", "stdout.txt") == said


# --- track --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_track_saves_live_until_interrupted(env, prepared, task_storage, tmp_path, signum):
    log = tmp_path / "app.log"
    proc = subprocess.Popen(
        command("track", "app.log", "--flush-interval", "0.2"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open(log, "a") as file:
            file.write("one\n")
            file.flush()
            wait_for(lambda: blob_text(task_storage, "TaskLog", "app.log") == "one\n", "the first line")
            file.write("two\n")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert blob_text(task_storage, "TaskLog", "app.log") == "one\ntwo\n"  # the last flush on the way out
    assert "Traceback" not in err


# --- errors and secrets -------------------------------------------------------------------------------------


def test_missing_credentials(bare_env, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    assert_one_line_error(
        cli("list", "job-1", env=bare_env), 1, "no storage configured", "--connection-string"
    )
    assert_one_line_error(cli("prepare", "job-1", env=bare_env), 1, "no storage configured")
    with_storage = {**bare_env, "BATCHFILES_CONTAINER_URL": "http://127.0.0.1:1/job-x?sig=abc"}
    assert_one_line_error(cli("save", "TaskOutput", "x.txt", env=with_storage, cwd=tmp_path), 1, "no task id")


def test_azure_sign_in_failure_is_quick_and_one_line(bare_env):
    """Without any Azure credential the account URL fails at once, not after minutes of retries."""
    result = cli("list", "job-1", "--account-url", "https://127.0.0.1:1/devstoreaccount1", env=bare_env)
    line = assert_one_line_error(result, 1)
    assert "no Azure sign-in" in line or "cannot reach storage" in line  # the latter where a sign-in exists


def test_not_prepared_and_bad_ids(env, job_id, tmp_path):
    assert_one_line_error(cli("list", job_id, env=env), 1, "does not exist", "batchfiles prepare")
    assert_one_line_error(cli("get", job_id, env=env), 1, "does not exist")
    (tmp_path / "x.txt").write_text("x")
    assert_one_line_error(cli("save", "TaskOutput", "x.txt", env=env, cwd=tmp_path), 1, "does not exist")
    assert_one_line_error(cli("list", "a b", env=env), 2, "invalid character")
    assert_one_line_error(cli("list", job_id, "--task", "a:b", env=env), 2, "task id")
    assert_one_line_error(cli("url", job_id, "--expiry", "7", env=env), 2, "not a duration")
    assert_one_line_error(cli("list", job_id, "--bogus", env=env), 2, "unrecognized arguments")


def test_no_secret_is_ever_printed(env, prepared, azurite, tmp_path):
    url = cli("url", prepared, env=env).stdout.strip()
    sig = parse_qs(urlsplit(url).query)["sig"][0]
    forged = re.sub(r"sig=[^&]+", "sig=" + "A" * 43 + "%3D", url)
    assert forged != url
    no_storage = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    (tmp_path / "x.txt").write_text("x")
    runs = [
        # a SAS that storage refuses, in the environment and as an option
        cli("list", prepared, "--container-url", forged, env=no_storage),
        cli(
            "save",
            "TaskOutput",
            "x.txt",
            env={**no_storage, "BATCHFILES_CONTAINER_URL": forged},
            cwd=tmp_path,
        ),
        # a valid SAS for another job's container; a SAS where no option takes one
        cli("list", "other-job", "--container-url", url, env=no_storage),
        cli("prepare", prepared, "--container-url", url, env=no_storage),
        # a connection string (the key) to a job that does not exist, with and without --debug
        cli("list", "missing-job", "--connection-string", azurite.connection_string, env=no_storage),
        cli("--debug", "list", "missing-job", env=env),
    ]
    for result in runs:
        assert result.returncode != 0
        assert "batchfiles: error:" in result.stderr
        text = result.stdout + result.stderr
        for secret in (sig, quote(sig, safe=""), "A" * 43, ACCOUNT_KEY, ACCOUNT_KEY[:20]):
            assert secret not in text, text
    assert "refused access" in runs[0].stderr and "refused access" in runs[1].stderr
    assert "Traceback" in runs[-1].stderr  # --debug shows it, still redacted


def test_unexpected_errors_hint_at_debug(env, prepared, tmp_path):
    """A bug (here: save patched to raise) is one line plus a hint; --debug shows the traceback."""
    code = textwrap.dedent(
        """\
        import sys
        import batchfiles.storage as storage
        def boom(*args, **kwargs):
            raise RuntimeError("something unexpected")
        storage.TaskOutputStorage.save = boom
        from batchfiles.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    (tmp_path / "x.txt").write_text("x")
    args = [sys.executable, "-c", code, "save", "TaskOutput", "x.txt"]
    result = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    line = assert_one_line_error(result, 1, "unexpected RuntimeError: something unexpected", "--debug")
    assert line
    debug = subprocess.run(
        [*args, "--debug"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --- progress bars ------------------------------------------------------------------------------------------


def run_on_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal (80 columns); (exit code, what the terminal showed)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave
        )
    finally:
        os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(timeout=PATIENCE), shown.decode(errors="replace")


BIG = 6 * 1024 * 1024  # over the bar's threshold (4 MiB)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_only(env, prepared, task_storage, tmp_path):
    pytest.importorskip("tqdm")
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    code, shown = run_on_terminal(command("save", "TaskOutput", "big.bin"), env, tmp_path)
    assert code == 0, shown
    assert "saving 1 file" in shown and "100%" in shown and "|" in shown

    piped = cli("save", "TaskOutput", "big.bin", env=env, cwd=tmp_path)
    assert piped.returncode == 0
    assert "%" not in piped.stderr and "\r" not in piped.stderr
    quiet_code, quiet = run_on_terminal(command("save", "-q", "TaskOutput", "big.bin"), env, tmp_path)
    assert quiet_code == 0 and quiet.strip() == ""

    small = tmp_path / "small.bin"
    small.write_bytes(b"small")
    code, shown = run_on_terminal(command("save", "TaskOutput", "small.bin"), env, tmp_path)
    assert code == 0 and "%" not in shown

    # Downloads draw one too, and the file is whole and verified.
    out = tmp_path / "out"
    code, shown = run_on_terminal(
        command("get", prepared, "--task", TASK, "big.bin", "-o", str(out)), env, tmp_path
    )
    assert code == 0 and "downloading 1 file" in shown and "100%" in shown, shown
    assert (out / TASK / "TaskOutput" / "big.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_no_bar_and_no_failure_without_tqdm(env, prepared, task_storage, tmp_path):
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    without_tqdm = "import sys; sys.modules['tqdm'] = None; from batchfiles.cli import main; sys.exit(main())"
    code, shown = run_on_terminal(
        [sys.executable, "-c", without_tqdm, "save", "TaskOutput", "big.bin"], env, tmp_path
    )
    assert code == 0, shown
    assert "%" not in shown and "saved 1 file" in shown
    assert task_storage.get("TaskOutput", "big.bin").size == BIG
