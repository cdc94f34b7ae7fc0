"""``batchfiles logs``: a job's task logs printed or followed (-f), end to end on Azurite through
``batchfiles run``; and its printer (prefixes, UTF-8 never split) as property tests."""

from __future__ import annotations

import codecs
import io
import json
import signal
import subprocess
import sys
from pathlib import Path

from batchfiles import TaskOutputStorage
from batchfiles._cli.logs import Printer, _colour, complete_utf8
from batchfiles.testing import ACCOUNT_NAME
from cli_helpers import PATIENCE, assert_one_line_error, blob_text, cli, start, wait_for
from faultproxy import FaultProxy
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


def test_logs_follow_picks_up_tasks_that_start_later_and_ends_when_all_are_closed(
    env, prepared, tmp_path, azurite
):
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        # the follower lists through the proxy, so its polls are counted; the tasks save directly
        through = {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(proxy.url_for(ACCOUNT_NAME))}
        follower = start("logs", prepared, "-f", "--poll-interval", "0.1", env=through, cwd=tmp_path)
        procs = [follower]
        try:
            polled_twice_after(proxy, 0)  # it waits: no task has started yet
            assert follower.poll() is None
            go = tmp_path / "go"
            slow = (
                "import os, time\nprint('a first')\ndeadline = time.monotonic() + 60\n"
                f"while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
                "    time.sleep(0.05)\nprint('a last')"
            )
            first = run_task(env, tmp_path, "a", slow)
            procs.append(first)
            with TaskOutputStorage.from_connection_string(azurite.connection_string, prepared, "a") as a:
                wait_for(lambda: blob_text(a, "TaskLog", "stdout.txt") == "a first\n", "task a's first line")
            polled_twice_after(proxy, proxy.counts["requests"])  # the follower has seen task a
            second = run_task(env, tmp_path, "b", "print('b only')")
            procs.append(second)
            assert finished(second)[0] == 0
            assert first.poll() is None  # task a still runs: b started later and ended first
            go.touch()
            assert finished(first)[0] == 0
            code, out, err = finished(follower)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(" | ")[1] for line in lines if line.startswith("a/stdout.txt")] == [
        "a first",
        "a last",
    ]
    assert "b/stdout.txt | b only" in lines
    assert "Traceback" not in err


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
