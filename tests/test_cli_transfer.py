"""The commands that move or show things once, run as ``python -m batchfiles`` against Azurite: prepare,
url, names, save, list, get; one-line errors without secrets; progress bars on a pseudo-terminal only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import hostile
import pytest
from azure.storage.blob import ContentSettings
from batchfiles import JobOutputStorage, TaskOutputStorage, naming
from batchfiles._tracking import limits
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME
from faultproxy import FaultProxy, Request
from helpers import (
    PATIENCE,
    TASK,
    assert_one_line_error,
    cli,
    command,
    slash_and_backslash,
    start,
    wait_for,
)
from scale_tasks import connection_string

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
    assert query["sp"] == ["racwdl"]

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
    assert_one_line_error(
        other, 1, "BATCHFILES_CONTAINER_URL is for container", "the job id given is 'other-job'"
    )


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


def test_save_files_patterns_dest_and_job_outputs(env, prepared, task, azurite, tmp_path):
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
    assert task.get("TaskOutput", "frames/2.png").download_bytes() == b"png2"

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


def test_save_never_loses_a_file_to_another_of_the_same_name(env, prepared, task, tmp_path):
    """``a/b.txt`` and a file named ``a\\b.txt`` (or ``../x.txt`` and ``x.txt``) are one blob: refused."""
    work = tmp_path / "work"
    slash_and_backslash(work, ".txt")
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
    assert list(task.list()) == []  # nothing was saved

    result = cli("save", "TaskOutput", "x.txt", "./x.txt", "x*.txt", "a/b.txt", env=env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"{TASK}/$TaskOutput/x.txt", f"{TASK}/$TaskOutput/a/b.txt"]
    assert "saved 2 files" in result.stderr
    result = cli("save", "TaskLog", "../x.txt", env=env, cwd=work)  # one file: saved under x.txt
    assert result.stdout.split() == [f"{TASK}/$TaskLog/x.txt"], result.stderr
    assert task.get("TaskLog", "x.txt").download_text() == "x above"


def test_save_patterns_stay_in_the_working_directory(env, prepared, task, tmp_path):
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


FAILING_SAVE = """\
import sys, time
import batchfiles.storage as storage
save = storage.TaskOutputStorage.save
def failing(self, kind, path, *args, **kwargs):
    if str(path).endswith("f00.txt"):
        raise OSError("cannot read f00.txt")
    time.sleep(0.5)  # the others are still going up when f00.txt fails
    return save(self, kind, path, *args, **kwargs)
storage.TaskOutputStorage.save = failing
from batchfiles.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_save_stops_at_the_first_error(env, prepared, task, tmp_path):
    """save goes through the library's multi-file save: when one file fails, the files not started yet are
    not saved (its own thread pool used to save all the others and then report the error)."""
    for i in range(30):
        (tmp_path / f"f{i:02d}.txt").write_text("x")
    args = [sys.executable, "-c", FAILING_SAVE, "save", "TaskOutput", "f*.txt"]
    result = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=PATIENCE)
    assert_one_line_error(result, 1, "cannot read f00.txt")
    assert result.stdout == ""
    assert len(list(task.list())) < 29  # the queued saves were cancelled


def test_save_names_every_file_before_uploading(env, prepared, task, tmp_path):
    """A name too long for storage is refused, with the rest: nothing is saved."""
    (tmp_path / "a.txt").write_text("a")
    long_name = "/".join(c * 250 for c in "nmopq")
    (tmp_path / long_name).parent.mkdir(parents=True)
    (tmp_path / long_name).write_text("q")
    result = cli("save", "TaskOutput", "a.txt", long_name, env=env, cwd=tmp_path)
    assert_one_line_error(result, 1, "Azure allows 1024", "nothing was saved")
    assert list(task.list()) == []


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


class Requests:
    """What a proxy's client asked, in order: ``list`` (a listing of the container) or ``get`` (a read)."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.seen: list[str] = []
        proxy.add_rule("delay", self._record)

    def _record(self, req: Request) -> bool:
        if "comp=list" in req.query:
            self.seen.append("list")
        elif req.method == "GET":
            self.seen.append("get")
        return False  # counted, not delayed

    def count(self, what: str) -> int:
        return self.seen.count(what)


def through(env: dict[str, str], proxy: FaultProxy) -> dict[str, str]:
    return {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(proxy.url_for(ACCOUNT_NAME))}


SMALL_PAGES = """\
import sys
from batchfiles import snapshot
snapshot.PAGE_SIZE = 10
from batchfiles.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_get_of_100_tasks_is_one_listing_and_downloads_start_on_the_first_page(
    env, prepared, azurite, tmp_path
):
    """Issue 21: get used to walk the job's folders, then list each task (101 listings for 100 tasks), and
    waited for them all before its first download; now one flat listing, and downloads start on page 1."""
    with (
        JobOutputStorage.from_connection_string(azurite.connection_string, prepared) as job,
        ThreadPoolExecutor(8) as pool,
    ):
        saves = [pool.submit(job.task(f"t{i}").save_text, "TaskOutput", f"t{i}", "x.txt") for i in range(100)]
        for save in saves:
            save.result()
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        requests = Requests(proxy)
        result = cli("get", prepared, "-o", str(tmp_path / "all"), env=through(env, proxy))
        assert result.returncode == 0, result.stderr
        assert (requests.count("list"), requests.count("get")) == (1, 100)

        # pages of 10 blobs: a download goes out before the listing's last page
        requests.seen.clear()
        args = [sys.executable, "-c", SMALL_PAGES, "get", prepared, "-o", str(tmp_path / "paged")]
        paged = subprocess.run(args, env=through(env, proxy), capture_output=True, text=True, timeout=120)
        assert paged.returncode == 0, paged.stderr
        assert requests.count("list") == 10 and requests.count("get") == 100
        last_listing = len(requests.seen) - 1 - requests.seen[::-1].index("list")
        assert requests.seen.index("get") < last_listing, requests.seen
    assert len(list((tmp_path / "paged").rglob("x.txt"))) == 100


def save_log_in_parts(storage: TaskOutputStorage, work: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A tracked stdout.txt rolled over into three parts (one block a part), closed; its bytes."""
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    log = work / "stdout.txt"
    save = storage.save_tracked(log, "stdout.txt", flush_interval=3600, settle=0)
    for line in (b"one\n", b"two\n", b"three\n"):
        with log.open("ab") as f:
            f.write(line)
        save.flush()
    save.close()
    return log.read_bytes()


def test_a_log_in_parts_is_one_row_and_one_whole_file(env, prepared, task, tmp_path, monkeypatch):
    """A log that rolled over used to be listed and downloaded as stdout.txt, stdout.txt.1, stdout.txt.2."""
    whole = save_log_in_parts(task, tmp_path, monkeypatch)
    assert [ref.file_path for ref in task.list()] == ["stdout.txt", "stdout.txt.1", "stdout.txt.2"]

    table = cli("list", prepared, env=env)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [row[:3] for row in rows] == [[TASK, "TaskLog", "stdout.txt"]]
    assert rows[0][3:5] == [str(len(whole)), "B"] and rows[0][-1] == "closed"
    (record,) = [json.loads(line) for line in cli("list", prepared, "--json", env=env).stdout.splitlines()]
    assert record["size"] == len(whole) and record["parts"] == [
        f"{TASK}/$TaskLog/stdout.txt.1",
        f"{TASK}/$TaskLog/stdout.txt.2",
    ]

    out = tmp_path / "out"
    result = cli("get", prepared, "-o", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["stdout.txt"]
    assert (out / TASK / "TaskLog" / "stdout.txt").read_bytes() == whole
    named = cli("get", prepared, "stdout.txt", "--task", TASK, "--kind", "TaskLog", "-o", str(out), env=env)
    assert named.returncode == 0, named.stderr
    assert (out / TASK / "TaskLog" / "stdout.txt").read_bytes() == whole


def test_get_skip_existing_downloads_only_what_changed(env, prepared, task, azurite, tmp_path, monkeypatch):
    task.save_bytes("TaskOutput", b"a" * 1000, "a.bin")
    task.save_bytes("TaskOutput", b"b" * 1000, "b.bin")
    whole = save_log_in_parts(task, tmp_path, monkeypatch)  # no Content-MD5: size and time
    out = tmp_path / "out"
    assert cli("get", prepared, "-o", str(out), env=env).returncode == 0
    files = {
        name: out / TASK / kind / name
        for kind, name in [("TaskOutput", "a.bin"), ("TaskOutput", "b.bin"), ("TaskLog", "stdout.txt")]
    }

    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        requests = Requests(proxy)
        again = cli("get", prepared, "-o", str(out), "--skip-existing", env=through(env, proxy))
        assert again.returncode == 0, again.stderr
        assert (again.stdout, requests.seen) == ("", ["list"])  # a finished job: nothing downloaded
        assert "downloaded 0 files" in again.stderr and "3 already there" in again.stderr

        files["a.bin"].write_bytes(b"A" * 1000)  # changed, same size
        files["stdout.txt"].write_bytes(b"x" * len(whole))  # changed, same size: its time tells
        requests.seen.clear()
        third = cli("get", prepared, "-o", str(out), "--skip-existing", env=through(env, proxy))
        assert third.returncode == 0, third.stderr
        assert sorted(third.stdout.split()) == sorted([str(files["a.bin"]), str(files["stdout.txt"])])
    assert files["a.bin"].read_bytes() == b"a" * 1000 and files["stdout.txt"].read_bytes() == whole
    assert_one_line_error(cli("get", prepared, "--idle-timeout", "1", env=env), 2, "--follow")


def test_get_skip_existing_never_reads_what_is_not_a_regular_file(env, prepared, task, tmp_path):
    """A local FIFO (an empty output has the size of one) or a directory of the output's size is not the
    output: never opened (a FIFO's open would wait for a writer for ever), said or replaced, no traceback."""
    folder = tmp_path / "out" / TASK / "TaskOutput"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "empty.bin")
    (folder / "dir.bin").mkdir()
    task.save_bytes("TaskOutput", b"", "empty.bin")
    task.save_bytes("TaskOutput", b"d" * (folder / "dir.bin").stat().st_size, "dir.bin")
    result = cli("get", prepared, "-o", str(tmp_path / "out"), "--skip-existing", env=env)
    assert "Traceback" not in result.stderr and "already there" not in result.stderr, result.stderr
    assert (folder / "empty.bin").is_file() and (folder / "empty.bin").read_bytes() == b"", result.stderr
    assert result.returncode == 1 and "dir.bin" in result.stderr  # a directory in the way: said


def test_get_follow_fetches_outputs_saved_after_it_started(env, prepared, task, tmp_path):
    task.save_text("TaskOutput", "early", "early.txt")
    out = tmp_path / "out"
    follower = start(
        "get", prepared, "-o", str(out), "--follow", "--poll-interval", "0.1", env=env, cwd=tmp_path
    )
    try:
        early, late = out / TASK / "TaskOutput" / "early.txt", out / TASK / "TaskOutput" / "late.txt"
        wait_for(early.exists, "the first download")
        task.save_text("TaskOutput", "late", "late.txt")
        wait_for(lambda: late.exists() and late.read_text() == "late", "the output saved later")
        task.save_text("TaskOutput", "early, again", "early.txt")
        wait_for(lambda: early.read_text() == "early, again", "the changed output")
        follower.send_signal(signal.SIGINT)
        stdout, stderr = follower.communicate(timeout=PATIENCE)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 130, stderr
    assert stdout.split() == [str(early), str(late), str(early)]
    assert "Traceback" not in stderr

    idle = cli(
        *("get", prepared, "-o", str(out), "-f", "--skip-existing"),
        *("--poll-interval", "0.1", "--idle-timeout", "0.5"),
        env=env,
    )
    assert idle.returncode == 0, idle.stderr
    assert idle.stdout == ""  # all there
    assert "nothing new for 0.5 s (--idle-timeout): stopped following" in idle.stderr


def test_get_follow_says_a_skipped_blob_at_once(env, prepared, task, container, tmp_path):
    """A follow ends with Ctrl-C, before any summary: a blob that is not an output is said when listed."""
    task.save_text("TaskOutput", "x", "x.txt")
    container.upload_blob(f"{TASK}/$TaskOutput/a//b", b"?")
    out = tmp_path / "out"
    follower = start(
        "get", prepared, "-o", str(out), "--follow", "--poll-interval", "0.1", env=env, cwd=tmp_path
    )
    try:
        wait_for((out / TASK / "TaskOutput" / "x.txt").exists, "the download")
        task.save_text("TaskOutput", "y", "y.txt")  # a poll after the first, which listed the blob too
        wait_for((out / TASK / "TaskOutput" / "y.txt").exists, "the next poll's download")
        follower.send_signal(signal.SIGINT)
        _, stderr = follower.communicate(timeout=PATIENCE)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 130, stderr
    assert stderr.count(f"skipped blob '{TASK}/$TaskOutput/a//b'") == 1, stderr  # once, not every poll


def test_get_follow_saves_no_two_outputs_as_one_file_across_polls(env, prepared, job_id, azurite, tmp_path):
    """Task ``JobOutput``'s ``TaskOutput/x`` and the job's ``JobOutput`` at ``TaskOutput/x`` have one local
    file: listed together they are both skipped; listed one poll apart, the later one must not overwrite
    the file of the earlier (which is no longer new, yet still has it)."""
    out = tmp_path / "out"
    shared = out / "JobOutput" / "TaskOutput" / "x"
    with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
        job.task("JobOutput").save_text("TaskOutput", "the task's", "x")
        follower = start(
            *("get", prepared, "-o", str(out), "--follow"),
            *("--poll-interval", "0.1", "--idle-timeout", "5"),
            env=env,
            cwd=tmp_path,
        )
        try:
            wait_for(shared.exists, "the task's output")
            job.save_text("JobOutput", "the job's", "TaskOutput/x")
            _, stderr = follower.communicate(timeout=PATIENCE)
        finally:
            follower.kill()
            follower.wait()
    assert shared.read_text() == "the task's", stderr
    assert "would all be saved as" in stderr and "Traceback" not in stderr


# --- errors and secrets -------------------------------------------------------------------------------------


def test_missing_credentials(bare_env, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    assert_one_line_error(
        cli("list", "job-1", env=bare_env), 1, "no storage configured", "AZURE_STORAGE_CONNECTION_STRING"
    )
    assert_one_line_error(cli("prepare", "job-1", env=bare_env), 1, "no storage account configured")
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
def test_progress_bar_on_a_terminal_only(env, prepared, task, tmp_path):
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
def test_no_bar_and_no_failure_without_tqdm(env, prepared, task, tmp_path):
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    without_tqdm = "import sys; sys.modules['tqdm'] = None; from batchfiles.cli import main; sys.exit(main())"
    code, shown = run_on_terminal(
        [sys.executable, "-c", without_tqdm, "save", "TaskOutput", "big.bin"], env, tmp_path
    )
    assert code == 0, shown
    assert "%" not in shown and "saved 1 file" in shown
    assert task.get("TaskOutput", "big.bin").size == BIG
