"""``batchfiles logs``: a job's task logs printed or followed (-f), end to end on Azurite through
``batchfiles run``; and its printer (prefixes, UTF-8 never split) as property tests."""

from __future__ import annotations

import codecs
import io
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from batchfiles import TaskOutputStorage
from batchfiles._cli.logs import Printer, _colour, complete_utf8
from batchfiles.testing import ACCOUNT_NAME
from faultproxy import FaultProxy
from helpers import PATIENCE, assert_one_line_error, cli, start, wait_for
from hypothesis import given
from hypothesis import strategies as st
from scale_tasks import connection_string


def run_task(env: dict[str, str], work: Path, task: str, script: str) -> subprocess.Popen[str]:
    """``batchfiles run`` of a Python ``script`` as task ``task``, in a working directory of its own."""
    cwd = work / task
    cwd.mkdir()
    task_env = {**env, "AZ_BATCH_TASK_ID": task}
    args = ["run", "--flush-interval", "0.1", "--", sys.executable, "-u", "-c", script]
    return start(*args, env=task_env, cwd=cwd)


def finished(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=PATIENCE)
    return proc.returncode, out, err


def test_logs_prints_prefixed_lines_raw_files_tails_and_outcomes(env, prepared, tmp_path):
    ok = "for i in range(5): print(f'ok {i} café')"
    bad = "import sys; print('bad one'); print('oops', file=sys.stderr); sys.exit(3)"
    assert finished(run_task(env, tmp_path, "t1", ok))[0] == 0
    assert finished(run_task(env, tmp_path, "t2", bad))[0] == 3

    result = cli("logs", prepared, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if line.startswith("t1/stdout.txt | ")] == [
        f"t1/stdout.txt | ok {i} café" for i in range(5)
    ]
    assert "t2/stdout.txt | bad one" in lines and "t2/stderr.txt | oops" in lines
    assert "task t1 exited with 0" in result.stderr and "task t2 exited with 3" in result.stderr

    raw = cli("logs", prepared, "t1", "--file", "stdout.txt", env=env)
    assert raw.stdout == (tmp_path / "t1" / "stdout.txt").read_text()
    tail = cli("logs", prepared, "t1", "--file", "stdout.txt", "--tail", "2", env=env)
    assert tail.stdout == "ok 3 café\nok 4 café\n"
    bare = cli("logs", prepared, "t2", "--no-prefix", "--tail", "1", env=env)
    assert sorted(bare.stdout.splitlines()) == ["bad one", "oops"]
    only = cli("logs", prepared, "--file", "stderr.txt", env=env)
    assert only.stdout.splitlines() == ["t2/stderr.txt | oops"]  # t1's stderr.txt is empty

    table = cli("list", prepared, "--kind", "TaskLog", env=env).stdout.splitlines()
    assert table[0].split()[-1] == "STATUS"
    statuses = {tuple(row.split()[:3]): " ".join(row.split()[-2:]) for row in table[1:]}
    assert statuses[("t1", "TaskLog", "stdout.txt")] == "exit 0"
    assert statuses[("t2", "TaskLog", "stderr.txt")] == "exit 3"
    records = [json.loads(line) for line in cli("list", prepared, "--json", env=env).stdout.splitlines()]
    t2 = next(r for r in records if r["task"] == "t2" and r["path"] == "stdout.txt")
    assert (t2["state"], t2["exit_code"]) == ("closed", 3)
    assert t2["started"] <= t2["ended"]


def test_following_a_job_goes_on_until_ctrl_c_and_named_tasks_end_when_their_logs_close(
    env, prepared, tmp_path, azurite
):
    """Issue 20: a whole job's follow does not end when every log it has seen is closed (tasks that start
    later are what it waits for); a follow of named tasks ends once their logs are closed."""
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        # the job's follower lists through the proxy, so its polls are counted; the rest go directly
        through = {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(proxy.url_for(ACCOUNT_NAME))}
        follower = start("logs", prepared, "-f", "--poll-interval", "0.1", env=through, cwd=tmp_path)
        named = start("logs", prepared, "a", "b", "-f", "--poll-interval", "0.1", env=env, cwd=tmp_path)
        procs = [follower, named]
        try:
            polled_twice_after(proxy, 0)  # it waits: no task has started yet
            first = run_task(env, tmp_path, "b", "print('b only')")
            procs.append(first)
            assert finished(first)[0] == 0
            polled_twice_after(proxy, proxy.counts["requests"])  # it has seen b's logs closed: all it knows
            assert follower.poll() is None and named.poll() is None  # named: a has not started yet
            later = run_task(env, tmp_path, "a", "print('a later')")
            procs.append(later)
            assert finished(later)[0] == 0
            named_code, named_out, named_err = finished(named)  # a and b closed: it ends by itself
            polled_twice_after(proxy, proxy.counts["requests"])
            assert follower.poll() is None  # a whole job: it goes on, for tasks that start later still
            follower.send_signal(signal.SIGINT)
            code, out, err = finished(follower)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    assert named_code == 0, named_err
    assert sorted(named_out.splitlines()) == ["a/stdout.txt | a later", "b/stdout.txt | b only"]
    assert code == 130, err
    assert sorted(out.splitlines()) == ["a/stdout.txt | a later", "b/stdout.txt | b only"]
    assert "Traceback" not in err + named_err


def test_idle_timeout_ends_a_follow_of_a_job(env, prepared, tmp_path):
    assert finished(run_task(env, tmp_path, "t1", "print('one')"))[0] == 0
    result = cli("logs", prepared, "-f", "--poll-interval", "0.1", "--idle-timeout", "0.5", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "t1/stdout.txt | one\n"
    assert "no log grew for 0.5 s (--idle-timeout): stopped following" in result.stderr
    assert_one_line_error(cli("logs", prepared, "--idle-timeout", "1", env=env), 2, "-f")


def test_logs_follow_waits_for_a_named_task_and_ctrl_c_exits_130(env, prepared, tmp_path, azurite):
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        through = {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(proxy.url_for(ACCOUNT_NAME))}
        follower = start("logs", prepared, "later", "-f", "--poll-interval", "0.1", env=through, cwd=tmp_path)
        try:
            polled_twice_after(proxy, 0)  # in its follow loop: Ctrl-C is handled there, not during imports
            assert follower.poll() is None
            follower.send_signal(signal.SIGINT)
            code, out, err = finished(follower)
        finally:
            follower.kill()
            follower.wait()
    assert code == 130, err
    assert out == "" and "Traceback" not in err


def test_logs_follow_waits_out_throttling_saying_so_once(
    env, prepared, azurite, service, monkeypatch, capsysbinary
):
    """Issue 20: far more throttled polls than a follow allows failures; it goes on while the log is open,
    says once on stderr that storage is throttling, and prints the log to its end. In-process, with the
    throttling waits scaled down."""
    from batchfiles import _throttle, naming
    from batchfiles.cli import main

    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.05))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)  # answers without Retry-After
    blob = service.get_blob_client(naming.container_name(prepared), "t1/$TaskLog/stdout.txt")
    blob.create_append_blob(metadata={"batchfiles_writer": "test"})
    blob.append_block(b"before\n")
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        proxy.add_rule("status", times=60, status=503)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url_for(ACCOUNT_NAME)))
        code: list[int] = []
        args = ["logs", prepared, "t1", "--file", "stdout.txt", "-f", "--poll-interval", "0.05"]
        follower = threading.Thread(target=lambda: code.append(main(args)))
        follower.start()
        try:
            wait_for(lambda: proxy.counts["status"] >= 60 or not follower.is_alive(), "60 throttled answers")
            blob.append_block(b"after\n")
            blob.set_blob_metadata({"batchfiles_writer": "test", "batchfiles_closed": "1"})
            follower.join(PATIENCE)
        finally:
            proxy.clear()
    assert not follower.is_alive()
    out, err = capsysbinary.readouterr()
    assert code == [0], err
    assert out == b"before\nafter\n"
    said = [line for line in err.decode().splitlines() if "throttl" in line]
    assert len(said) == 1 and said[0].startswith("batchfiles: warning: storage is throttling the account"), (
        err
    )


@pytest.mark.parametrize("command", [["list"], ["get", "-o", "out"]])
def test_list_and_get_keep_the_librarys_patience_with_throttling_and_say_they_wait(
    command, env, prepared, azurite, task, monkeypatch, capsys, tmp_path
):
    """Issue 20: more throttled answers in a row than the interactive retry_total (2) allows: list and get
    wait as the library does (scaled down here), say so once on stderr, and succeed."""
    from batchfiles import _throttle
    from batchfiles.cli import main

    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.05))
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)  # answers without Retry-After
    monkeypatch.chdir(tmp_path)
    task.save_bytes("TaskOutput", b"result\n", "result.txt")
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        proxy.add_rule("status", times=6, status=503)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", connection_string(proxy.url_for(ACCOUNT_NAME)))
        code = main([command[0], prepared, *command[1:]])
        throttled = proxy.counts["status"]
    out, err = capsys.readouterr()
    assert code == 0, err
    assert throttled == 6
    assert "result.txt" in out
    said = [line for line in err.splitlines() if "throttl" in line]
    assert said == [
        "batchfiles: storage is throttling the account: waiting and trying again (this can take minutes)"
    ]


@pytest.mark.parametrize("mode", [["t1", "--file", "stdout.txt"], [], ["--no-prefix"]])
def test_a_reader_that_stops_early_gets_141_in_every_mode(env, prepared, mode, tmp_path):
    """``logs ... | head``: stdout closed before everything was printed exits 141 (as a command killed by
    SIGPIPE), one raw file as well as prefixed or bare lines (a pipe takes part of a write, then fails)."""
    for task in ("t1", "t2"):
        storage = TaskOutputStorage.from_connection_string(
            env["AZURE_STORAGE_CONNECTION_STRING"], prepared, task
        )
        with storage:
            storage.save_bytes("TaskLog", b"".join(b"line %d\n" % i for i in range(200_000)), "stdout.txt")
    reader = start("logs", prepared, *mode, env=env, cwd=tmp_path)
    try:
        assert reader.stdout.readline().endswith("line 0\n")
        reader.stdout.close()  # as head does, having its lines
        err = reader.stderr.read()
        code = reader.wait(PATIENCE)
    finally:
        reader.kill()
        reader.wait()
    assert code == 141, err
    assert err == ""


def polled_twice_after(proxy: FaultProxy, requests: int) -> None:
    """Wait until the follower (the proxy's only client) has sent 2 requests (listings) past ``requests``."""
    wait_for(lambda: proxy.counts["requests"] >= requests + 2, "the follower's polls")


def test_logs_of_nothing_and_usage_errors(env, prepared):
    assert_one_line_error(cli("logs", prepared, env=env), 1, "no TaskLog files found")
    assert_one_line_error(
        cli("logs", prepared, "t1", "--file", "out.txt", env=env), 1, "at out.txt of task t1"
    )
    assert_one_line_error(cli("logs", prepared, "--kind", "JobOutput", env=env), 2, "job output kind")
    assert_one_line_error(cli("logs", prepared, "--file", "../x", env=env), 2, "'..' segment")
    assert_one_line_error(cli("logs", prepared, "--tail", "-1", env=env), 2, "--tail")
    assert_one_line_error(cli("logs", prepared, "bad:task", env=env), 2, "task id")


# --- the printer --------------------------------------------------------------------------------------------


TEXTS = st.lists(st.text(alphabet=st.sampled_from("ab\né☕😀\x00"), max_size=12), min_size=1, max_size=4)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


@given(TEXTS, st.lists(st.integers(0, 200), max_size=30), st.randoms())
def test_prefixed_lines_are_whole_whatever_the_chunks(texts: list[str], cuts: list[int], rng) -> None:
    out = io.BytesIO()
    printer = Printer(out, prefixed=True, colour=False)
    pending = {f"t{i}": split(text.encode(), cuts) for i, text in enumerate(texts) if text}
    while pending:  # the logs interleaved at random, each in its order
        task = rng.choice(sorted(pending))
        printer.write((task, "log.txt"), pending[task].pop(0))
        if not pending[task]:
            del pending[task]
    printer.finish()
    lines = out.getvalue().decode().splitlines()
    for i, text in enumerate(texts):
        mine = [line.split(" | ", 1)[1] for line in lines if line.startswith(f"t{i}/log.txt")]
        expected = text.split("\n")
        if expected[-1] == "":
            expected.pop()
        assert mine == expected


@given(st.text(alphabet=st.sampled_from("aé☕😀\n"), max_size=20), st.lists(st.integers(0, 80), max_size=20))
def test_raw_output_is_the_bytes_and_never_ends_inside_a_character(text: str, cuts: list[int]) -> None:
    data = text.encode()

    class Writes(io.BytesIO):
        def write(self, chunk) -> int:  # type: ignore[override]
            chunk.decode()  # every write is whole characters
            return super().write(chunk)

    out = Writes()
    printer = Printer(out, raw=True, prefixed=False, colour=False)
    for piece in split(data, cuts):
        printer.write(("t", "p"), piece)
    printer.finish()
    assert out.getvalue() == data


@given(TEXTS, st.integers(1, 5), st.booleans())
def test_every_byte_is_written_when_the_output_takes_part_of_a_write(texts, most, raw) -> None:
    """A pipe may take part of a write (its reader went away, a signal came): the rest is written again."""

    class Short(io.BytesIO):
        def write(self, chunk) -> int:  # type: ignore[override]
            return super().write(bytes(chunk[:most]))

    out = Short()
    printer = Printer(out, raw=raw, prefixed=False, colour=False)
    data = "".join(texts).encode()
    printer.write(("t", "p"), data)
    printer.finish()
    assert out.getvalue() == data if raw else out.getvalue().rstrip(b"\n") == data.rstrip(b"\n")


@given(st.binary(max_size=12))
def test_complete_utf8_holds_back_only_an_unfinished_character(data: bytes) -> None:
    cut = complete_utf8(data)
    assert len(data) - 3 <= cut <= len(data)
    if cut < len(data):
        rest = data[cut:]
        assert rest[0] >= 0xC0 and len(rest) < {0xC: 2, 0xD: 2, 0xE: 3, 0xF: 4}[rest[0] >> 4]
    valid = codecs.getincrementaldecoder("utf-8")()
    try:
        valid.decode(data)
    except UnicodeDecodeError:
        return
    data[:cut].decode()  # a valid prefix, cut there, is whole characters


@given(TEXTS, st.lists(st.integers(0, 200), max_size=30), st.randoms())
def test_lines_without_prefixes_are_whole_and_as_stored(texts: list[str], cuts: list[int], rng) -> None:
    texts = ["\n".join(f"{i}:{line}" for line in text.split("\n")) for i, text in enumerate(texts)]
    out = io.BytesIO()
    printer = Printer(out, prefixed=False, colour=False)
    pending = {i: split(text.encode(), cuts) for i, text in enumerate(texts)}
    while pending:  # the logs interleaved at random, each in its order
        log = rng.choice(sorted(pending))
        printer.write((f"t{log}", "log.txt"), pending[log].pop(0))
        if not pending[log]:
            del pending[log]
    printer.finish()
    printed = out.getvalue().decode().split("\n")
    for i, text in enumerate(texts):
        assert [line for line in printed if line.startswith(f"{i}:")] == text.split("\n")


def test_prefixes_are_aligned_and_coloured_on_a_terminal(monkeypatch) -> None:
    out = io.BytesIO()
    printer = Printer(out, prefixed=True, colour=True)
    printer.write(("t1", "stdout.txt"), b"one\n")
    printer.write(("task-22", "stderr.txt"), b"two\npartial")
    printer.finish()
    assert out.getvalue().decode().splitlines() == [
        "\033[36mt1/stdout.txt\033[0m | one",
        "\033[33mtask-22/stderr.txt\033[0m | two",
        "\033[33mtask-22/stderr.txt\033[0m | partial",
    ]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _colour(Tty()) and not _colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _colour(Tty())
