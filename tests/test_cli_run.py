"""``batchfiles run`` and ``batchfiles track``, run as ``python -m batchfiles`` against Azurite: exit codes
and @success/@failure/@completion outputs, live logs while the command runs, signal forwarding, a second
run in one directory refused, and a tracked file saved until interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from batchfiles import naming
from batchfiles.testing import ACCOUNT_NAME
from faultproxy import FaultProxy
from helpers import (
    PATIENCE,
    assert_one_line_error,
    blob_text,
    cli,
    command,
    read_or_empty,
    slash_and_backslash,
    start,
    wait_for,
    write_script,
)
from scale_tasks import connection_string

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
def test_run_saves_logs_and_the_outputs_whose_condition_holds(env, prepared, task, tmp_path, code, saved):
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
    assert blob_text(task, "TaskLog", "stdout.txt") == "to stdout\n"
    assert blob_text(task, "TaskLog", "stderr.txt") == "to stderr\n"
    found = {ref.file_path for kind in ("TaskOutput", "Diagnostics") for ref in task.list(kind)}
    assert found == saved
    assert f"the command exited with {code}" in result.stderr


def test_run_without_dashes_and_a_missing_command(env, prepared, task, tmp_path):
    result = cli("run", sys.executable, "-c", "print('plain')", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "plain\n"), result.stderr

    result = cli("run", "--output", "*.txt@failure", "--", "no-such-command-xyz", env=env, cwd=tmp_path)
    assert result.returncode == 127
    assert "cannot run 'no-such-command-xyz'" in result.stderr
    assert "cannot run" in blob_text(task, "TaskLog", "stderr.txt")  # why, in the task's log

    assert_one_line_error(cli("run", env=env, cwd=tmp_path), 2, "no command to run")
    assert_one_line_error(
        cli("run", "--output", "x@sometimes", "--", "true", env=env), 2, "unknown condition"
    )


def test_run_log_is_live_while_the_command_runs(env, prepared, task, tmp_path):
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
        wait_for(lambda: "first line" in blob_text(task, "TaskLog", "stdout.txt"), "the live log")
        assert proc.poll() is None  # still running: the log was saved live
        (tmp_path / "go").touch()
        assert proc.wait(timeout=PATIENCE) == 0
    finally:
        proc.kill()
        proc.wait()
    assert blob_text(task, "TaskLog", "stdout.txt") == "first line\nlast line\n"


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
def test_run_forwards_signals(env, prepared, task, tmp_path, signum, mode, code):
    write_script(tmp_path, "child.py", TRAPPING_CHILD)
    proc = start(
        "run", "--output", "marker@failure", "--", sys.executable, "child.py", mode, env=env, cwd=tmp_path
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
        assert "stopping on" in blob_text(task, "TaskLog", "stdout.txt")  # logs saved after the signal
        assert task.get("TaskOutput", "marker").download_text() == signal.Signals(signum).name
    else:
        assert f"the command exited with {code}" in err


def test_run_exits_75_when_it_cannot_save(env, prepared, task, tmp_path):
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


#: ``python -m batchfiles`` with throttled retries 10 ms apart and only 2 of them.
FAST_THROTTLED_RETRIES = (
    "import runpy, batchfiles._throttle as t; t.THROTTLED_WINDOW = (0.01, 0.01); t.NO_RETRY_AFTER = 0.01; "
    "t.THROTTLED_RETRIES = 2; "
    "runpy.run_module('batchfiles', run_name='__main__', alter_sys=True)"
)


def test_run_exits_75_naming_the_outputs_a_throttled_account_refused(env, prepared, task, tmp_path, azurite):
    """Storage answers every output's upload 503 ServerBusy until the retries run out: exit 75, and the
    message names the output and says the account throttled; the logs are saved."""
    with FaultProxy(azurite.port, deadline_s=60) as proxy:
        proxy.add_rule("status", lambda request: "%24TaskOutput/" in request.path, status=503)
        env = {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(proxy.url_for(ACCOUNT_NAME))}
        args = ["run", "--output", "result.bin", "--", sys.executable, "-c", "open('result.bin', 'w')"]
        result = subprocess.run(
            [sys.executable, "-c", FAST_THROTTLED_RETRIES, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 75, result.stderr
    assert (
        "--output 'result.bin=TaskOutput@completion' not saved: storage throttled the account: gave up "
        "on 'task-1/$TaskOutput/result.bin'" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert proxy.counts["status"] == 3  # the first try and 2 retries
    assert [r.file_path for r in task.list("TaskLog")] == ["stderr.txt", "stdout.txt"]


def test_run_reports_outputs_it_cannot_save_and_saves_the_rest(env, prepared, task, tmp_path):
    """Two --output patterns of one kind give one blob to two files; another climbs out; two link loops."""
    work = tmp_path / "work"
    slash_and_backslash(work, ".dat")
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
    assert sorted(r.file_path for r in task.list("TaskOutput")) == ["c.dat"]
    preview = sorted(r.file_path for r in task.list("TaskPreview"))
    assert preview == ["d/x.dat"]  # **: each folder once, though the loops
    assert [r.file_path for r in task.list("TaskLog")] == ["stderr.txt", "stdout.txt"]


@pytest.mark.parametrize(
    ("pattern", "kind", "saved"),
    [
        ("*.txt=TaskLog", "TaskLog", {"report.txt"}),
        ("**/*.txt=TaskLog", "TaskLog", {"report.txt", "sub/stdout.txt"}),
        ("std*.txt=TaskLog", "TaskLog", set()),
        ("*.txt", "TaskOutput", {"report.txt"}),
    ],
)
def test_run_leaves_its_own_live_logs_out_of_the_outputs(env, prepared, task, tmp_path, pattern, kind, saved):
    """A pattern matching run's own stdout.txt and stderr.txt: they are its live logs, already saved, and
    stay so (append blobs, closed with the exit code), as does a link to them; the other matches are
    saved; one line on stderr says so. (Before: re-saved as block blobs over the live logs, their exit
    code and close mark gone.)"""
    script = (
        "import os, sys; open('report.txt', 'w').write('r'); os.symlink('stdout.txt', 'link.txt'); "
        "print('out'); print('err', file=sys.stderr)"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "stdout.txt").write_text("not run's")
    result = cli(
        "run",
        "--output",
        pattern,
        "--output",
        "stdout.txt=TaskLog@success",
        "--",
        sys.executable,
        "-c",
        script + "; sys.exit(3)",
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    for name, text in (("stdout.txt", "out\n"), ("stderr.txt", "err\n")):
        ref = task.get("TaskLog", name)
        assert ref.download_text() == text
        blob = task._container.get_blob_client(ref.blob_name)
        assert str(getattr(t := blob.get_blob_properties().blob_type, "value", t)) == "AppendBlob"
        assert ref.metadata["batchfiles_exit_code"] == "3" and ref.metadata["batchfiles_closed"] == "1"
    said = [line for line in result.stderr.splitlines() if "saved live" in line]
    assert len(said) == 1 and "stdout.txt" in said[0] and "stderr.txt" in said[0], result.stderr
    assert said[0].startswith("batchfiles: ") and "Traceback" not in result.stderr
    found = {ref.file_path for ref in task.list(kind)}
    assert found == saved | ({"stdout.txt", "stderr.txt"} if kind == "TaskLog" else set())


def test_run_never_saves_an_output_over_a_part_of_its_live_log(env, prepared, task, tmp_path):
    """A file named as a roll-over part of run's log (stdout.txt.1), saved as TaskLog, would replace that
    part of the live log (its last lines, exit code and close mark): left out like the logs themselves;
    as another kind it is an ordinary output. (Found by a hostile review of issue 20.)"""
    script = "open('stdout.txt.1', 'w').write('mine'); open('stderr.txt.12', 'w').write('mine'); print('out')"
    args = ["--output", "*=TaskLog", "--output", "*.1=TaskOutput"]
    result = cli("run", *args, "--", sys.executable, "-c", script, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(ref.file_path for ref in task.list("TaskLog")) == ["stderr.txt", "stdout.txt"]
    assert [ref.file_path for ref in task.list("TaskOutput")] == ["stdout.txt.1"]
    assert "roll-over parts" in result.stderr and "Traceback" not in result.stderr


def test_run_on_an_unprepared_job_does_not_start_the_command(env, job_id, tmp_path):
    result = cli("run", "--", sys.executable, "-c", "open('ran', 'w')", env=env, cwd=tmp_path)
    assert_one_line_error(result, 1, "does not exist", "batchfiles prepare")
    assert not (tmp_path / "ran").exists()


def test_a_second_run_in_the_same_directory_is_refused(env, prepared, task, tmp_path):
    """Two runs of one task in one directory, 50 ms apart: one runs and saves its logs; the other refuses
    at once, without running its command or touching the logs (before the lock, each emptied the other's
    stdout.txt and both exited 0 with a blob holding either or neither). The command that runs waits for
    ``go``, touched once the other run has exited, so the two always overlap."""
    write_script(
        tmp_path,
        "talk.py",
        """\
        import os, sys, time
        from pathlib import Path
        Path(f"ran-{sys.argv[1]}").touch()
        deadline = time.monotonic() + 60
        for i in range(20):
            print(f"{sys.argv[1]} says {i}", flush=True)
            while i == 9 and not os.path.exists("go") and time.monotonic() < deadline:
                time.sleep(0.05)
        """,
    )
    procs = {}
    for name in ("first", "second"):
        procs[name] = start(
            "run", "--flush-interval", "0.2", "--", sys.executable, "talk.py", name, env=env, cwd=tmp_path
        )
        time.sleep(0.05)
    try:
        wait_for(lambda: any(proc.poll() is not None for proc in procs.values()), "one run to refuse")
    finally:
        (tmp_path / "go").touch()
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
    assert blob_text(task, "TaskLog", "stdout.txt") == said


# --- track --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_track_saves_live_until_interrupted(env, prepared, task, tmp_path, signum):
    log = tmp_path / "app.log"
    proc = start("track", "app.log", "--flush-interval", "0.2", env=env, cwd=tmp_path)
    try:
        with open(log, "a") as file:
            file.write("one\n")
            file.flush()
            wait_for(lambda: blob_text(task, "TaskLog", "app.log") == "one\n", "the first line")
            file.write("two\n")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert blob_text(task, "TaskLog", "app.log") == "one\ntwo\n"  # the last flush on the way out
    assert "Traceback" not in err
