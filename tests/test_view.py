"""``batchfiles view`` without a browser: its JSON API, headers, paging, the outputs it serves and refuses
(traversal, odd names, the Host check), live logs as Server-Sent Events, and the command line's errors."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import TaskOutputStorage, naming, output_storage_container_url, snapshot
from batchfiles._listing import Listed
from batchfiles._tracking import limits
from batchfiles.snapshot import JobSnapshot
from batchfiles.testing import Azurite
from batchfiles.view import _model, _server
from hypothesis import given
from hypothesis import strategies as st
from view_helpers import make_job, png, put_log, serve, serve_in_thread, view_env

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def get(
    port: int,
    path: str,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> Any:
    """(status, headers, body) of a GET sent as is (no normalisation of the path)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


@pytest.fixture
def viewed_job(service: BlobServiceClient, job_id: str) -> str:
    """The id of a job of 12 tasks (one failed, one running) with hostile outputs beside them."""
    container = make_job(service, job_id, 12, failed=(4,))
    put_log(container, "task-running", "still going\n", open_=True)
    evil = TaskOutputStorage.from_service(service, job_id, "task-1")
    evil.save_text("TaskOutput", "<script>alert(1)</script>", "evil.html")
    evil.save_text("TaskOutput", '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "evil.svg")
    evil.save_text("TaskOutput", "x", "dir/na me%2F#?.txt")
    container.upload_blob("not-an-output.txt", b"x")  # outside the conventions: never served
    return job_id


@pytest.fixture
def sas_env(service: BlobServiceClient, viewed_job: str) -> dict[str, str]:
    """The view's storage: the job's container URL with a SAS (so a signature is there to leak)."""
    url = output_storage_container_url(service, viewed_job, expiry=timedelta(hours=1))
    return view_env(BATCHFILES_CONTAINER_URL=url)


def test_api_pages_states_and_headers(viewed_job: str, sas_env: dict[str, str]) -> None:
    signature = sas_env["BATCHFILES_CONTAINER_URL"].split("sig=")[1]
    with serve(viewed_job, sas_env) as served:
        answers = []
        status, headers, body = get(served.port, "/api/job")
        answers.append((headers, body))
        assert status == 200 and headers["content-type"].startswith("application/json")
        summary = json.loads(body)
        assert summary["container"] == naming.container_name(viewed_job)
        assert summary["tasks"] == {"all": 13, "running": 1, "exited": 12, "failed": 1, "unknown": 0}
        assert summary["task_kinds"]["TaskPreview"]["count"] == 12
        assert summary["skipped"] == 1
        _, _, body = get(served.port, "/api/tasks?offset=2&limit=5")
        page = json.loads(body)
        assert page["total"] == 13 and [t["id"] for t in page["tasks"]] == [f"task-{i}" for i in range(2, 7)]
        failed = next(t for t in page["tasks"] if t["id"] == "task-4")
        assert (failed["state"], failed["exit_code"]) == ("exited", 3)
        assert failed["previews"] == [{"path": "thumb.png", "url": "/blob/task/task-4/TaskPreview/thumb.png"}]
        _, _, body = get(served.port, "/api/tasks?state=failed")
        assert [t["id"] for t in json.loads(body)["tasks"]] == ["task-4"]
        _, _, body = get(served.port, "/api/tasks?state=running")
        assert [t["id"] for t in json.loads(body)["tasks"]] == ["task-running"]
        _, _, body = get(served.port, "/api/tasks/task-1")
        detail = json.loads(body)
        assert {o["path"] for o in detail["outputs"]["TaskOutput"]} == {
            "evil.html",
            "evil.svg",
            "dir/na me%2F#?.txt",
        }
        for path in (
            "/",
            "/static/view.js",
            "/static/view.css",
            "/api/tasks/task-1",
            "/api/tasks?limit=9999",
            "/api/tasks/nope",
            "/nowhere",
            "/blob/task/task-1/TaskOutput/missing.txt",
        ):
            _, headers, body = get(served.port, path)
            answers.append((headers, body))
            assert headers["x-content-type-options"] == "nosniff", path
            csp = headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp or path.startswith("/blob/"), path
        for headers, body in answers:
            text = json.dumps(headers) + body.decode("utf-8", "replace")
            assert "sig=" not in text and signature not in text and AZURITE_KEY not in text
    assert "sig=" not in served.stderr


def test_outputs_served_safely(viewed_job: str, sas_env: dict[str, str]) -> None:
    with serve(viewed_job, sas_env) as served:
        status, headers, body = get(served.port, "/blob/task/task-3/TaskPreview/thumb.png")
        assert status == 200 and headers["content-type"] == "image/png" and body.startswith(b"\x89PNG")
        assert "content-disposition" not in headers and "sandbox" in headers["content-security-policy"]
        for name in ("evil.html", "evil.svg"):
            status, headers, body = get(served.port, f"/blob/task/task-1/TaskOutput/{name}?inline=1")
            assert status == 200 and b"alert(1)" in body
            assert headers["content-type"] == "application/octet-stream"
            assert headers["content-disposition"] == f"attachment; filename*=UTF-8''{name}"
            assert "sandbox" in headers["content-security-policy"]
        odd = _model.blob_url("task-1", "TaskOutput", "dir/na me%2F#?.txt")
        status, headers, body = get(served.port, odd)
        assert (status, body) == (200, b"x"), odd
        assert headers["content-disposition"] == "attachment; filename*=UTF-8''na%20me%252F%23%3F.txt"


REFUSED = [
    ("/blob/task/task-1/TaskOutput/..%2F..%2Fnot-an-output.txt", 400),
    ("/blob/task/task-1/TaskOutput/../../../not-an-output.txt", 400),
    ("/blob/task/task-1/TaskOutput/a%5Cb.txt", 400),
    ("/blob/task/task-1/TaskOutput/.%2Fevil.html", 400),
    ("/blob/task/task-1/TaskOutput/dir//x.txt", 400),
    ("/blob/task/..%2Ftask-2/TaskPreview/thumb.png", 400),
    ("/blob/task/task%00/TaskPreview/thumb.png", 400),
    ("/blob/task/task-1/Task%24Output/evil.html", 404),  # a custom kind the job does not have
    ("/blob/task/task-1/TaskPreview/evil.html", 404),  # right names, but not in the listing
    ("/blob/job/TaskOutput/not-an-output.txt", 404),
    ("/blob/task/task-99/TaskPreview/thumb.png", 404),
    ("/api/log/task-1/TaskLog/..%2Fx", 400),
    ("/api/tasks?offset=-1", 400),
    ("/api/tasks?state=bogus", 400),
    ("/api/tasks?offset=%C2%B2", 400),  # a digit to str.isdigit, not to int()
    ("/api/tasks?limit=1e3", 400),
]


def test_names_from_urls_are_checked(viewed_job: str, azurite: Azurite) -> None:
    """Only the job's outputs, named by the library's rules, are served: bad names are 400, names not in
    the job's listing 404 (a blob outside the conventions included)."""
    with serve(viewed_job, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        for path, status in REFUSED:
            got, headers, body = get(served.port, path)
            assert got == status, (path, body)
            assert "error" in json.loads(body) and headers["x-content-type-options"] == "nosniff"
            assert AZURITE_KEY not in body.decode()


def test_host_header_checked(viewed_job: str, azurite: Azurite) -> None:
    with serve(viewed_job, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        for host in (f"127.0.0.1:{served.port}", f"localhost:{served.port}"):
            assert get(served.port, "/api/job", host=host)[0] == 200
        for host in (
            "evil.example",
            f"evil.example:{served.port}",
            "127.0.0.1",
            f"127.0.0.1:{served.port + 1}",
        ):
            status, headers, _ = get(served.port, "/api/job", host=host)
            assert status == 421 and headers["x-content-type-options"] == "nosniff", host
        # another site's page (another port is the same site) makes no request of storage through it
        blob = "/blob/task/task-1/TaskOutput/evil.html"
        for site, status in (("cross-site", 403), ("same-site", 403), ("same-origin", 200), ("none", 200)):
            for path in ("/api/job", blob, "/api/log/task-running/TaskLog/stdout.txt?x=1"):
                if status == 200 and path.startswith("/api/log"):
                    continue  # a live log's stream does not end
                got, headers, _ = get(served.port, path, headers={"Sec-Fetch-Site": site})
                assert got == status and headers["x-content-type-options"] == "nosniff", (site, path)


def test_port_80_is_answered_without_a_port_in_host() -> None:
    """On port 80 a browser sends ``Host: 127.0.0.1`` (the default port left out): answered, not 421."""
    from batchfiles.view._server import allowed_hosts

    assert allowed_hosts(80) == {"127.0.0.1", "localhost", "127.0.0.1:80", "localhost:80"}
    assert allowed_hosts(8080) == {"127.0.0.1:8080", "localhost:8080"}


def test_log_events_live_and_resumed(
    service: BlobServiceClient, job_id: str, azurite: Azurite, tmp_path: Path
) -> None:
    """A tracked log as events: what it has, then lines as they are saved, then ``end`` once closed; a page
    that reconnects with Last-Event-ID gets only what follows."""
    make_job(service, job_id, 1)
    log = tmp_path / "out.log"
    log.write_text("first\n")
    task = TaskOutputStorage.from_service(service, job_id, "task-0")
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        with task.save_tracked(log, "live.txt", flush_interval=0.2, settle=0.1, linger=0.1):
            deadline = time.monotonic() + 10
            while get(served.port, "/api/tasks/task-0")[2].count(b"live.txt") == 0:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            events: list[str] = []
            reader = threading.Thread(
                target=_read_events, args=(served.port, "/api/log/task-0/TaskLog/live.txt", events)
            )
            reader.start()
            time.sleep(1.0)
            with log.open("a") as f:
                f.write("second ü\n")
        reader.join(20)
        assert not reader.is_alive()
        text = "".join(json.loads(e.partition("data: ")[2]) for e in events if "\nevent:" not in f"\n{e}")
        assert text == "first\nsecond ü\n"
        assert events[0].startswith("event: start") and events[-1].startswith("event: end")
        first_id = next(e for e in events if e.startswith("id: ")).split("\n")[0][4:]
        status, _, body = get(
            served.port, "/api/log/task-0/TaskLog/live.txt", headers={"Last-Event-ID": first_id}
        )
        assert status == 200 and b'"second \\u00fc\\n"' in body and b"first" not in body
        for bogus in ("\u00b2", "-5", "x"):  # ignored: from the log's tail, here its start
            status, _, body = get(
                served.port, "/api/log/task-0/TaskLog/live.txt", headers={"Last-Event-ID": bogus}
            )
            assert status == 200 and b"first" in body


def _read_events(port: int, path: str, events: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", path)
    response = conn.getresponse()
    buffer = ""
    while True:
        line = response.readline().decode()
        if not line:
            return
        if line == "\n":
            if buffer and not buffer.startswith(":"):
                events.append(buffer.rstrip("\n"))
            if buffer.startswith("event: end"):
                return
            buffer = ""
        else:
            buffer += line


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchfiles", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_errors_are_one_line(azurite: Azurite, job_id: str) -> None:
    env = view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    missing = _cli("view", job_id, "--no-browser", env=env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert "job-" in missing.stderr and AZURITE_KEY not in missing.stderr
    for port in ("70000", "²", "-1"):
        bad = _cli("view", job_id, "--port", port, env=env)
        assert bad.returncode == 2 and "port" in bad.stderr and "Traceback" not in bad.stderr


def test_the_view_extra_is_named_when_missing(tmp_path: Path, azurite: Azurite, job_id: str) -> None:
    blocker = tmp_path / "aiohttp"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked', name='aiohttp')\n")
    env = view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    result = _cli("view", job_id, "--no-browser", env=env)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "batchfiles: error: batchfiles view needs aiohttp: pip install 'batchfiles[view]'"
    )


# --- the model, without storage -----------------------------------------------------------------------------


def a_blob(name: str, size: int = 1, metadata: dict[str, str] | None = None) -> Listed:
    """A listed blob, as the library's listing parses it."""
    return Listed(name, size, None, None, None, None, metadata or {})


def job_of(listing: list[Listed]) -> JobSnapshot:
    """The library's snapshot of ``listing`` (in name order, as storage lists), nothing told."""
    listing = sorted(listing, key=lambda b: b.name)
    return snapshot.build("job-x", "http://127.0.0.1:1/acc/job-x", listing, lambda name, why: None)


SEGMENTS = st.sampled_from(
    ["t1", "task-2", "$TaskOutput", "$TaskLog", "$JobOutput", "..", ".", "", "a b", "x.png"]
)
NAMES = st.one_of(st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join), st.text(max_size=30))


@given(st.lists(NAMES, max_size=30, unique=True))
def test_the_view_serves_every_output_by_its_url_and_only_outputs(names: list[str]) -> None:
    """Any listing: every blob is an output (of the job or of one task) or counted as skipped; each output
    is found again by the names its URL carries, which pass the server's checks of a request."""
    view = _model.view(job_of([a_blob(n) for n in names]))
    outputs = list(view.job.all_outputs())
    assert len(outputs) + view.summary("x")["skipped"] == len(names)
    for output in outputs:
        url = _model.output_json(output)["url"]
        where, _, rest = url.removeprefix("/blob/").partition("/")
        task = None
        if where == "task":
            task, _, rest = rest.partition("/")
            task = _server._task_arg(unquote(task))
        kind, _, path = rest.partition("/")
        kind, path = _server._kind_arg(unquote(kind)), _server._path_arg(unquote(path))
        assert view.find(task, kind, path) is output and output.blob_name in names
        # its kind is one of its side's (a TaskLog at the job's level, or a JobOutput under a task, is
        # outside the conventions)
        assert output.blob_name == naming.blob_name(output.kind, path, task)


def test_a_tracked_save_in_parts_is_one_output_of_the_page() -> None:
    part = {"batchfiles_part": "1", "batchfiles_closed": "1", "batchfiles_exit_code": "2"}
    listing = [
        a_blob("t1/$TaskLog/out.txt", 10, {"batchfiles_writer": "w"}),
        a_blob("t1/$TaskLog/out.txt.1", 5, part),
    ]
    view = _model.view(job_of(listing))
    (log,) = view.task("t1")["outputs"]["TaskLog"]
    assert (log["path"], log["size"], log["log"], log["exit_code"]) == ("out.txt", 15, "closed", 2)
    (row,) = view.page(0, 10, "failed")["tasks"]
    assert (row["id"], row["state"], row["exit_code"]) == ("t1", "exited", 2)


@given(st.text(min_size=1, max_size=30))
def test_blob_urls_are_one_segment_per_name_part(path: str) -> None:
    url = _model.blob_url("t-1", "TaskOutput", path)
    assert url.startswith("/blob/task/t-1/TaskOutput/")
    assert unquote(url[len("/blob/task/t-1/TaskOutput/") :]) == path
    assert not set(url) & set(" #?\\\"'<>") and url == quote(unquote(url), safe="/")


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30, unique=True))
def test_task_ids_sort_by_number(numbers: list[int]) -> None:
    ids = [f"frame-{n}" for n in numbers]
    assert sorted(ids, key=snapshot.natural_key) == [f"frame-{n}" for n in sorted(numbers)]


@given(st.lists(st.text(max_size=12), max_size=20))
def test_any_task_ids_sort(ids: list[str]) -> None:
    """Digits of other scripts ("²", "٣") are text: a hostile name never breaks the sort."""
    assert sorted(ids, key=snapshot.natural_key) == sorted(sorted(ids), key=snapshot.natural_key)


@given(st.text(max_size=20))
def test_only_raster_images_are_inline(path: str) -> None:
    kind = _model.image_type(path)
    assert kind in (None, "image/png", "image/jpeg", "image/gif", "image/webp")
    assert _model.image_type(path + ".svg") is None and _model.image_type(path + ".html") is None
    assert _model.image_type(path + "/x.PNG") == "image/png"


def test_png_helper_makes_valid_images() -> None:
    data = png(3, 2, (1, 2, 3))
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"


def test_sigterm_and_ctrl_c_stop_cleanly(service: BlobServiceClient, job_id: str, azurite: Azurite) -> None:
    """SIGTERM as soon as the URL is printed, and Ctrl-C with a live log's event stream open: exit 0, no
    traceback, at once."""
    put_log(make_job(service, job_id, 1), "task-open", "x\n", open_=True)
    env = view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    command = [sys.executable, "-m", "batchfiles", "view", job_id, "--no-browser"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().startswith("http://127.0.0.1:")
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "Traceback" not in err, err
    with serve(job_id, env) as served:
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        conn.request("GET", "/api/log/task-open/TaskLog/stdout.txt")
        assert conn.getresponse().readline() == b"event: start\n"
        started = time.monotonic()
    assert time.monotonic() - started < 15  # not aiohttp's 60 s shutdown timeout


def test_a_failed_listing_keeps_the_last_and_says_why(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    container = make_job(service, job_id, 2)
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        assert json.loads(get(served.port, "/api/job")[2])["failure"] is None
        container.delete_container()
        deadline = time.monotonic() + 15
        while (summary := json.loads(get(served.port, "/api/job")[2]))["failure"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert summary["tasks"]["all"] == 2 and naming.container_name(job_id) in summary["failure"]
        assert AZURITE_KEY not in summary["failure"]


def test_long_names_are_served_and_bad_requests_logged_in_one_line(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """An output whose URL is longer than aiohttp's default line (8,190 bytes: 1,000 characters of 3 bytes
    each, percent-encoded) is served; a request line longer still is a 400 and one warning line (``serve``
    checks that no traceback was printed)."""
    name = "\u20ac" * 1000 + ".txt"
    make_job(service, job_id, 1)
    TaskOutputStorage.from_service(service, job_id, "task-0").save_text("TaskOutput", "long", name)
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        detail = json.loads(get(served.port, "/api/tasks/task-0")[2])
        url = detail["outputs"]["TaskOutput"][0]["url"]
        assert len(url) > 9000
        status, headers, body = get(served.port, url)
        assert (status, body) == (200, b"long") and headers["x-content-type-options"] == "nosniff"
        assert get(served.port, "/" + "a" * 70_000)[0] == 400
    assert served.stderr.count("view: Error handling request") == 1, served.stderr


def test_a_resumed_log_that_was_replaced_starts_again(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """A page that reconnects with a Last-Event-ID beyond the log (replaced by a shorter one since, or the
    server restarted) gets ``reset`` and the log, not silence until the log grows past the old offset."""
    put_log(make_job(service, job_id, 1), "task-0", "new run\n", exit_code=0)
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        status, _, body = get(
            served.port, "/api/log/task-0/TaskLog/stdout.txt", headers={"Last-Event-ID": "5000"}
        )
    events = body.decode().split("\n\n")
    assert status == 200 and events[0] == "event: reset\nid: 0\ndata: {}", events
    assert '"new run\\n"' in body.decode() and events[-2] == "event: end\ndata: {}"


def test_a_log_ending_in_a_cut_character_keeps_its_last_bytes(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """A closed log whose last character is cut (a writer killed mid-character): its bytes are shown,
    replaced, before ``end``, not dropped."""
    container = make_job(service, job_id, 1)
    blob = container.get_blob_client(naming.blob_name("TaskLog", "stdout.txt", "task-0"))
    metadata = {limits.WRITER_KEY: "test", limits.CLOSED_KEY: "1"}
    blob.upload_blob(b"last line \xe2\x98", blob_type="AppendBlob", metadata=metadata, overwrite=True)
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        status, _, body = get(served.port, "/api/log/task-0/TaskLog/stdout.txt")
    events = body.decode().split("\n\n")
    assert status == 200 and events[-2] == "event: end\ndata: {}", events
    assert events[-3] == 'id: 12\ndata: "\\ufffd"', events


def test_a_tracked_log_in_parts_downloads_whole(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """A tracked save past an append blob's block limit goes on in ``name.1``, ``name.2`` (marked parts): the
    page shows one output of their summed size, and its download is all of them in order, not the first."""
    container = make_job(service, job_id, 1)
    base = naming.blob_name("TaskLog", "long.log", "task-0")
    for index, text in enumerate(["part zero\n", "part one\n", "part two\n"]):
        metadata = {limits.WRITER_KEY: "test"}
        if index:
            metadata[limits.PART_KEY] = str(index)
        if index == 2:
            metadata[limits.CLOSED_KEY] = "1"
        name = f"{base}.{index}" if index else base
        container.upload_blob(name, text.encode(), blob_type="AppendBlob", metadata=metadata)
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        logs = json.loads(get(served.port, "/api/tasks/task-0")[2])["outputs"]["TaskLog"]
        (log,) = [o for o in logs if o["path"].startswith("long.log")]
        status, _, body = get(served.port, log["url"])
    assert (status, body) == (200, b"part zero\npart one\npart two\n")
    assert log["size"] == len(body) and log["log"] == "closed"


def test_a_browser_that_waits_for_the_page_gets_it(
    tmp_path: Path, service: BlobServiceClient, azurite: Azurite, job_id: str
) -> None:
    """``webbrowser`` runs a console browser (w3m, lynx, $BROWSER) and waits for it to quit: it must not
    run in the server's loop, or the server cannot answer the browser it waits for (a hang)."""
    make_job(service, job_id, 1)
    page = tmp_path / "page.html"
    browser = tmp_path / "browser.py"
    browser.write_text(
        "import sys, urllib.request\n"
        f"open({str(page)!r}, 'wb').write(urllib.request.urlopen(sys.argv[1], timeout=10).read())\n"
    )
    env = view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)
    env.update(BROWSER=f"{sys.executable} {browser} %s", DISPLAY="", WAYLAND_DISPLAY="")
    command = [sys.executable, "-m", "batchfiles", "view", job_id]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 15
        while not (page.exists() and page.stat().st_size):
            assert time.monotonic() < deadline, "the browser never got the page"
            time.sleep(0.1)
        assert b"batchfiles view" in page.read_bytes()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "no browser" not in err and "Traceback" not in err, err


# --- under load: a stalled reader, a big job's listing, reconnects, malformed requests (issue 20) -----------

LOG_MIB = 96
#: What the server may hold for one stalled reader of a log, whatever the log's size.
HELD_MIB = 40


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _sse_request(port: int, path: str, last_event_id: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Last-Event-ID: {last_event_id}\r\n\r\n"
    ).encode()


def _dechunked(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body's bytes."""
    out, at = bytearray(), 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


def test_a_stalled_reader_of_a_large_log_holds_the_server_to_a_bound(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """A page that reconnects from byte 0 of a large log and then reads nothing (a stalled tab, a slow link):
    the server reads from storage only as fast as the page takes the events, so its memory stays within a
    bound whatever the log's size; read at last, the page gets every byte, in order."""
    container = make_job(service, job_id, 1)
    line = "".join(chr(33 + i % 90) for i in range(99)) + "\n"
    text = line * (LOG_MIB * 1024 * 1024 // len(line))
    put_log(container, "task-0", text, exit_code=0, name="big.txt")
    path = "/api/log/task-0/TaskLog/big.txt"
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        pid = served.proc.pid
        assert get(served.port, "/api/log/task-0/TaskLog/stdout.txt")[0] == 200  # the code paths loaded
        before = _status_kib(pid, "VmRSS")
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM from now on
        with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            sock.sendall(_sse_request(served.port, path, "0"))
            # stalled: nothing read until the server's memory stops changing (or passes the bound)
            steady, last = 0, before
            while steady < 12:
                time.sleep(0.25)
                rss = _status_kib(pid, "VmRSS")
                assert rss - before < HELD_MIB * 1024, f"{(rss - before) >> 10} MiB held for a stalled reader"
                steady = steady + 1 if abs(rss - last) < 1024 else 0
                last = rss
            received = bytearray()
            while not received.endswith(b"\r\n0\r\n\r\n"):  # the last chunk, after the end event
                chunk = sock.recv(1 << 20)
                assert chunk, "the stream ended before its end"
                received += chunk
        peak = _status_kib(pid, "VmHWM")
    events = _dechunked(bytes(received).partition(b"\r\n\r\n")[2]).decode().split("\n\n")
    assert events[0] == 'event: start\ndata: {"offset": 0}' and events[-2] == "event: end\ndata: {}"
    data = [e.partition("data: ")[2] for e in events if e.startswith("id: ")]
    assert "".join(json.loads(d) for d in data) == text
    assert peak - before < HELD_MIB * 1024, f"{(peak - before) >> 10} MiB held at the peak"


def test_no_request_waits_for_a_listing(
    service: BlobServiceClient, job_id: str, azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the server builds a new snapshot of the job (held here until the requests are answered, as a
    5,000-task job's listing holds it for seconds), every request is answered from the last one."""
    make_job(service, job_id, 3)
    entered, release = threading.Event(), threading.Event()
    build = _model.view

    def held(*args: Any, **kwargs: Any) -> _model.View:
        entered.set()
        release.wait(60)
        return build(*args, **kwargs)

    with serve_in_thread(azurite.connection_string, job_id) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        monkeypatch.setattr(_server, "REFRESH", 0.0)  # every request asks for a new listing
        monkeypatch.setattr(_model, "view", held)
        try:
            assert get(port, "/api/job")[0] == 200
            assert entered.wait(30), "no new listing started"
            for path in ("/api/job", "/api/tasks?limit=2", "/api/tasks/task-1", "/"):
                try:
                    status = get(port, path, timeout=10)[0]
                except TimeoutError:
                    pytest.fail(f"{path} waited for the listing")
                assert status == 200, path
        finally:
            release.set()


def test_a_resumed_log_that_only_grew_goes_on(
    service: BlobServiceClient, job_id: str, azurite: Azurite
) -> None:
    """A page that reconnects with a Last-Event-ID past the size of the (up to 1.5 s old) listing, because
    the log grew since, goes on from there: no ``reset``, nothing read twice."""
    container = make_job(service, job_id, 1)
    put_log(container, "task-0", "first\n", open_=True)
    blob = container.get_blob_client(naming.blob_name("TaskLog", "stdout.txt", "task-0"))
    path = "/api/log/task-0/TaskLog/stdout.txt"
    with serve(job_id, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        assert json.loads(get(served.port, "/api/tasks/task-0")[2])["outputs"]["TaskLog"][0]["size"] == 6
        blob.append_block(b"second\n")  # no request of the server since: its listing says 6 bytes
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=15)
        conn.request("GET", path, headers={"Last-Event-ID": "9"})
        response = conn.getresponse()
        events: list[str] = []
        while len(events) < 2:
            event = ""
            while (line := response.readline().decode()) not in ("\n", ""):
                event += line
            assert line, events
            if event and not event.startswith(":"):
                events.append(event.rstrip("\n"))
        conn.close()
    assert events == ['event: start\ndata: {"offset": 9}', 'id: 13\ndata: "ond\\n"'], events


MALFORMED = [
    b"GET /<script>SECRET\x01 HTTP/1.1\r\nHost: {host}\r\n\r\n",
    b"G\x00T /<script>SECRET HTTP/1.1\r\nHost: {host}\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: {host}\r\n<script>SECRET\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: {host}\r\nContent-Length: <script>SECRET\r\n\r\n",
    b"GET / HTTP/7.1<script>SECRET\r\nHost: {host}\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b"<script>SECRET HTTP/1.1\r\nHost: {host}\r\n\r\n",
]


def test_malformed_requests_get_the_security_headers(viewed_job: str, azurite: Azurite) -> None:
    """aiohttp answers a request it cannot parse itself (400), before any handler: that answer too has the
    headers every answer has, and does not echo the request's bytes back."""
    with serve(viewed_job, view_env(AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string)) as served:
        for raw in MALFORMED:
            with socket.create_connection(("127.0.0.1", served.port), timeout=15) as sock:
                sock.sendall(raw.replace(b"{host}", f"127.0.0.1:{served.port}".encode()))
                answer = b""
                while chunk := sock.recv(65536):
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            assert lines[0].startswith("HTTP/1.") and lines[0][9:12] == "400", (raw[:40], lines[0])
            assert headers["x-content-type-options"] == "nosniff", (raw[:40], headers)
            assert headers["content-security-policy"].startswith("default-src 'none'"), raw[:40]
            assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
            assert headers["content-type"] == "application/json; charset=utf-8", headers
            assert b"SECRET" not in body and b"script" not in body, body
            assert "error" in json.loads(body), body
