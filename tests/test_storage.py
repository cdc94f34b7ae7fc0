"""The storage API against Azurite, each test on ``batchfiles`` and on ``batchfiles.aio`` (fixture ``api``):
layout, round trips, the plan of a save, errors, integrity, secrets kept out (what only aio has:
test_storage_aio)."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient, ContentSettings
from batchfiles import (
    BatchFilesError,
    ConfigurationError,
    ContainerNotFoundError,
    IntegrityError,
    JobOutputKind,
    OutputExistsError,
    OutputNotFoundError,
    TaskOutputKind,
    naming,
    output_storage_container_url,
    prepare_output_storage,
)
from batchfiles.testing import ACCOUNT_NAME
from helpers import QUICK_RETRIES, TASK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scale_tasks import connection_string

pytestmark = pytest.mark.apis("sync", "aio")

TASK_OUTPUT = TaskOutputKind.TASK_OUTPUT


def raw_names(container: ContainerClient) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def test_prepare_is_idempotent(api, azurite, job_id):
    with api.BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        first = api.prepare_output_storage(service, job_id)
        second = api.prepare_output_storage(service, job_id)
        assert first.container_name == second.container_name == naming.container_name(job_id)
        assert first.get_container_properties().public_access is None  # private


def test_layout_is_exactly_the_conventions(task, job, container, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("out/frame 1.png").write_bytes(b"\x89PNG fake")
    task.save(TASK_OUTPUT, "out/frame 1.png")
    task.save_text(TaskOutputKind.TASK_LOG, "hello\n", "stdout.txt")
    task.save_bytes(TaskOutputKind.custom("Thumbs"), b"x", "a/b.bin")
    job.save_text(JobOutputKind.JOB_OUTPUT, "movie", "movie.mp4")
    assert raw_names(container) == [
        "$JobOutput/movie.mp4",
        "task-1/$TaskLog/stdout.txt",
        "task-1/$TaskOutput/out/frame 1.png",
        "task-1/$Thumbs/a/b.bin",
    ]


def test_save_returns_a_full_reference(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("frame.png").write_bytes(b"pixels" * 1000)
    ref = task.save(TASK_OUTPUT, "frame.png")
    assert (ref.kind, ref.file_path, ref.blob_name) == (
        TASK_OUTPUT,
        "frame.png",
        "task-1/$TaskOutput/frame.png",
    )
    assert ref.size == 6000
    assert ref.content_md5 == hashlib.md5(b"pixels" * 1000).digest()
    assert ref.content_type == "image/png"
    assert ref.last_modified is not None
    assert ref.url.endswith("/task-1/%24TaskOutput/frame.png") and "?" not in ref.url
    assert ref.download_bytes() == b"pixels" * 1000


def test_parent_paths_never_escape(task, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (tmp_path / "x.txt").write_text("outside")
    ref = task.save(TASK_OUTPUT, "../x.txt")
    assert ref.blob_name == "task-1/$TaskOutput/x.txt"
    assert task.save(TASK_OUTPUT, "../x.txt", "..\\..\\y").file_path == "y"


def test_absolute_path_needs_a_destination(task, tmp_path):
    path = tmp_path / "abs.txt"
    path.write_text("abs")
    with pytest.raises(ValueError, match="absolute"):
        task.save(TASK_OUTPUT, path)
    assert task.save(TASK_OUTPUT, path, "named/abs.txt").file_path == "named/abs.txt"


def test_list_get_and_custom_kind_isolation(task):
    task.save_text(TASK_OUTPUT, "a", "a.txt")
    task.save_text(TaskOutputKind.custom("TaskOutputX"), "x", "x.txt")
    task.save_text(TaskOutputKind.TASK_PREVIEW, "p", "p.txt")
    assert [r.file_path for r in task.list(TASK_OUTPUT)] == ["a.txt"]
    assert [r.file_path for r in task.list("TaskOutputX")] == ["x.txt"]
    everything = {(str(r.kind), r.file_path) for r in task.list()}
    assert everything == {("TaskOutput", "a.txt"), ("TaskOutputX", "x.txt"), ("TaskPreview", "p.txt")}
    assert task.get("TaskOutput", "a.txt").download_text() == "a"
    with pytest.raises(OutputNotFoundError):
        task.get(TASK_OUTPUT, "x.txt")


def test_list_is_lazy_and_tasks_are_separate(api, azurite, prepared, job):
    with api.BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        other = api.TaskOutputStorage.from_service(service, prepared, "task-2")
        other.save_text(TASK_OUTPUT, "2", "two.txt")
        mine = api.TaskOutputStorage.from_service(service, prepared, "task-1")
        mine.save_text(TASK_OUTPUT, "1", "one.txt")
        listing = mine.list()
        assert not isinstance(listing, list)
        assert [r.file_path for r in listing] == ["one.txt"]
    job.save_text(JobOutputKind.JOB_PREVIEW, "j", "j.txt")
    assert sorted(job.task_ids()) == ["task-1", "task-2"]
    assert [r.file_path for r in job.task("task-2").list()] == ["two.txt"]
    assert [r.blob_name for r in job.list()] == ["$JobPreview/j.txt"]


def test_kinds_of_the_other_side_are_refused(task, job):
    with pytest.raises(ValueError, match="not a task output kind"):
        task.save_text(JobOutputKind.JOB_OUTPUT, "x", "x.txt")
    with pytest.raises(ValueError, match="not a job output kind"):
        job.save_text("TaskLog", "x", "x.txt")
    with pytest.raises(TypeError):
        task.save_text(42, "x", "x.txt")


def test_overwrite_false(task, tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    task.save(TASK_OUTPUT, path, "f.txt")
    with pytest.raises(OutputExistsError):
        task.save(TASK_OUTPUT, path, "f.txt", overwrite=False)
    with pytest.raises(OutputExistsError):
        task.save_text(TASK_OUTPUT, "two", "f.txt", overwrite=False)
    assert task.get(TASK_OUTPUT, "f.txt").download_text() == "one"


@pytest.mark.fault_proxy(seed=3, deadline_s=60)
@pytest.mark.parametrize("size", [5, 3 * 1024 * 1024], ids=["single-put", "block-list"])
def test_overwrite_false_with_a_lost_response_is_not_a_false_already_exists(
    api, proxy, prepared, tmp_path, size
):
    """The first try lands, its response is lost, the retry meets 409/412: the save said "already exists"
    about its own bytes (issue 9)."""
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(size))
    writes = ("comp=blocklist",) if size > 5 else ("",)
    proxy.add_rule(
        "drop_response",
        lambda r: r.method == "PUT" and "comp=block&" not in r.query and all(w in r.query for w in writes),
        times=1,
    )
    conn = connection_string(proxy.url_for(ACCOUNT_NAME))
    with api.TaskOutputStorage.from_connection_string(conn, prepared, TASK, **QUICK_RETRIES) as task:
        try:
            ref = task.save(TASK_OUTPUT, path, "f.bin", overwrite=False, block_size=1024 * 1024)
        except OutputExistsError as err:
            pytest.fail(f"a lost response turned into a false error: {err}")
        assert ref.download_bytes() == path.read_bytes()
    assert proxy.counts["drop_response"] == 1


def test_save_many_with_output_files_wildcards(task, tmp_path):
    for rel in ["a.png", "b.png", "c.txt", ".hidden.png", "sub/d.png", "sub/deep/e.png", "f1.log", "f2.log"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    refs = task.save_many(TASK_OUTPUT, ["*.png", "**/*.png", "f[12].log", "f?.log"], base_dir=tmp_path)
    assert sorted(r.file_path for r in refs) == [
        "a.png",
        "b.png",
        "f1.log",
        "f2.log",
        "sub/d.png",
        "sub/deep/e.png",
    ]
    assert task.save_many(TASK_OUTPUT, ".hidden.png", base_dir=tmp_path)[0].file_path == ".hidden.png"
    assert [r.file_path for r in task.save_many(TASK_OUTPUT, "[!ab].*", base_dir=tmp_path)] == ["c.txt"]
    assert task.save_many(TASK_OUTPUT, "*.nothing", base_dir=tmp_path) == []
    with pytest.raises(FileNotFoundError):
        task.save_many(TASK_OUTPUT, "*", base_dir=tmp_path / "missing")
    seen: list[tuple[int, int]] = []
    task.save_many(TASK_OUTPUT, "**/*.png", base_dir=tmp_path, progress=lambda s, t: seen.append((s, t)))
    total = sum(len(name) for name in ["a.png", "b.png", "sub/d.png", "sub/deep/e.png"])
    assert seen[-1] == (total, total)


def test_save_many_stops_at_the_first_error(task, tmp_path):
    for i in range(40):
        (tmp_path / f"f{i:02d}.txt").write_text("x")
    task.save_text(TASK_OUTPUT, "already", "f00.txt")
    with pytest.raises(OutputExistsError):
        task.save_many(TASK_OUTPUT, "*.txt", base_dir=tmp_path, overwrite=False, max_concurrency=1)
    assert len(list(task.list(TASK_OUTPUT))) < 40  # the queued saves were cancelled


def write_files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)


def test_save_many_refuses_two_files_for_one_blob_and_saves_nothing(task, tmp_path):
    """``a/b.txt`` and a file named ``a\\b.txt`` both name blob ``a/b.txt``: one would be lost."""
    write_files(tmp_path, "a/b.txt", "a\\b.txt", "c.txt")
    with pytest.raises(ValueError, match="would both be saved as") as err:
        task.save_many(TASK_OUTPUT, ["**/*.txt", "*.txt"], base_dir=tmp_path)
    message = str(err.value)
    assert repr(str(tmp_path / "a/b.txt")) in message and repr(str(tmp_path / "a\\b.txt")) in message
    assert "'task-1/$TaskOutput/a/b.txt'" in message and "nothing was saved" in message
    assert list(task.list()) == []
    refs = task.save_many(TASK_OUTPUT, ["*.txt", "c.txt", "./c.txt"], base_dir=tmp_path)  # one file once
    assert [r.file_path for r in refs] == ["a/b.txt", "c.txt"]


def test_given_files_are_checked_like_save_many(task, tmp_path):
    """(local, destination) pairs, as the command line's save gives them: every blob name is derived and
    every collision refused before the first upload; a file given twice goes up once; progress counts all."""
    write_files(tmp_path, "a.txt", "bb.txt")
    a, b = str(tmp_path / "a.txt"), str(tmp_path / "bb.txt")
    with pytest.raises(ValueError, match=r"would both be saved as 'task-1/\$TaskOutput/x\.txt'"):
        task.save_files(TASK_OUTPUT, [(a, "x.txt"), (b, "./x.txt")])
    with pytest.raises(ValueError, match="Azure allows 1024"):
        task.save_files(TASK_OUTPUT, [(a, "a.txt"), (b, "n" * 1100)])
    with pytest.raises(ValueError, match="job output kind"):
        task.save_files("JobOutput", [(a, "a.txt")])
    with pytest.raises(TypeError, match=r"\(local path, destination\) pairs"):
        task.save_files(TASK_OUTPUT, [a])  # type: ignore[list-item]
    assert list(task.list()) == []
    seen: list[tuple[int, int]] = []
    files = [(tmp_path / "a.txt", "x/a.txt"), (b, "bb.txt"), (a, "x/a.txt")]  # paths or str
    refs = task.save_files(TASK_OUTPUT, files, progress=lambda s, t: seen.append((s, t)))
    assert [r.blob_name for r in refs] == ["task-1/$TaskOutput/x/a.txt", "task-1/$TaskOutput/bb.txt"]
    assert seen[-1] == (len("a.txt") + len("bb.txt"),) * 2


def test_save_many_never_leaves_base_dir(task, tmp_path, caplog):
    base = tmp_path / "base"
    write_files(tmp_path, "outside.txt", "secret/key.txt")
    write_files(base, "in.txt", "sub/deep.txt")
    os.symlink("../secret", base / "linkdir")
    os.symlink("../secret/key.txt", base / "leak.txt")
    os.symlink("sub", base / "alias")
    for pattern in ["../*.txt", "sub/../../*.txt"]:
        with pytest.raises(ValueError, match="may not climb above it"):
            task.save_many(TASK_OUTPUT, ["*.txt", pattern], base_dir=base)
    assert list(task.list()) == []
    with caplog.at_level(logging.WARNING, logger="batchfiles"):
        refs = task.save_many(TASK_OUTPUT, "**", base_dir=base)
    assert sorted(r.file_path for r in refs) == ["in.txt", "sub/deep.txt"]  # alias/ is sub/, walked once
    assert sorted(r.file_path for r in task.list()) == ["in.txt", "sub/deep.txt"]
    skipped = sorted(r.getMessage().split(":")[0] for r in caplog.records if r.name == "batchfiles")
    assert skipped == ["skipped leak.txt", "skipped linkdir"]


def test_a_folder_swapped_for_an_outside_link_after_the_walk_is_not_uploaded(task, tmp_path):
    """The walk checks links, but each file is then opened by name: a concurrent process that replaces a
    walked folder with a link to outside base_dir got the outside file uploaded (issue 9)."""
    base, secret = tmp_path / "base", tmp_path / "secret"
    (base / "d").mkdir(parents=True)
    secret.mkdir()
    (secret / "b.txt").write_text("SECRET")
    (base / "a.txt").write_text("a")
    (base / "d" / "b.txt").write_text("b")
    swapped = threading.Event()

    def swap(sent: int, total: int) -> None:  # stands for another process acting mid-save
        if not swapped.is_set():
            swapped.set()
            for child in (base / "d").iterdir():
                child.unlink()
            (base / "d").rmdir()
            (base / "d").symlink_to(secret)

    try:
        refs = task.save_many("TaskOutput", "**/*.txt", base_dir=base, max_concurrency=1, progress=swap)
    except (OSError, ValueError):
        return  # refusing is fine
    assert swapped.is_set()
    saved = {ref.file_path: ref.download_bytes() for ref in refs}
    assert b"SECRET" not in saved.values(), saved


def test_save_many_walks_link_loops_once(task, tmp_path):
    """``d/up -> ..`` made glob list a.txt 41 times; two loops took over a minute."""
    write_files(tmp_path, "a.txt", "d/x.txt", "e/y.txt")
    os.symlink("..", tmp_path / "d" / "up")
    os.symlink("..", tmp_path / "e" / "up")
    refs = task.save_many(TASK_OUTPUT, "**/*.txt", base_dir=tmp_path)
    assert [r.file_path for r in refs] == ["a.txt", "d/x.txt", "e/y.txt"]
    assert len(list(task.list())) == 3


def test_save_many_names_every_file_before_uploading(task, tmp_path):
    write_files(tmp_path, "a.txt", "b\x01.txt", "c.txt")
    with pytest.raises(ValueError, match="control character") as err:
        task.save_many(TASK_OUTPUT, "*", base_dir=tmp_path, max_concurrency=1)
    assert "b\\x01.txt" in str(err.value) and "nothing was saved" in str(err.value)
    (tmp_path / "b\x01.txt").unlink()
    (Path(os.fsdecode(os.path.join(os.fsencode(tmp_path), b"\xff.txt")))).write_text("not UTF-8")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        task.save_many(TASK_OUTPUT, "*", base_dir=tmp_path, max_concurrency=1)
    assert list(task.list()) == []


def test_a_colon_is_a_plain_character_in_a_linux_name(task, tmp_path):
    write_files(tmp_path, "a:b", "C:x")
    refs = task.save_many(TASK_OUTPUT, "*:*", base_dir=tmp_path)
    assert [r.blob_name for r in refs] == ["task-1/$TaskOutput/C:x", "task-1/$TaskOutput/a:b"]
    assert task.get(TASK_OUTPUT, "a:b").download_text() == "a:b"


def test_large_file_in_blocks_with_crc_and_md5(task, container, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    ref = task.save(
        TASK_OUTPUT, path, "big.bin", block_size=1024 * 1024, progress=lambda s, t: seen.append((s, t))
    )
    assert ref.size == len(data)
    assert ref.content_md5 == hashlib.md5(data).digest()
    assert seen[-1] == (len(data), len(data))
    blocks = container.get_blob_client(ref.blob_name).get_block_list()[0]
    assert len(blocks) == 4
    assert ref.download_bytes() == data
    got: list[tuple[int, int]] = []
    target = ref.download_to_file(tmp_path / "down" / "big.bin", progress=lambda r, t: got.append((r, t)))
    assert target.read_bytes() == data
    assert got[-1] == (len(data), len(data))


def test_content_md5_can_be_skipped(task, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * 1024 * 1024 + 1))
    ref = task.save(TASK_OUTPUT, path, "big.bin", block_size=1024 * 1024, content_md5=False)
    assert ref.content_md5 is None
    assert ref.download_bytes() == path.read_bytes()


def test_corrupted_blob_is_detected_and_leaves_no_file(task, container, tmp_path):
    ref = task.save_text(TASK_OUTPUT, "the real content", "r.txt")
    blob = container.get_blob_client(ref.blob_name)
    blob.set_http_headers(
        ContentSettings(content_type="text/plain", content_md5=bytearray(hashlib.md5(b"x").digest()))
    )
    with pytest.raises(IntegrityError):
        ref.download_bytes()
    target = tmp_path / "r.txt"
    with pytest.raises(IntegrityError):
        ref.download_to_file(target)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(IntegrityError), ref.open() as stream:
        stream.read()


def test_open_streams_and_delete(task):
    ref = task.save_bytes(TASK_OUTPUT, b"0123456789" * 1000, "s.bin")
    with ref.open() as stream:
        assert stream.read(5) == b"01234"
        assert stream.read() == (b"0123456789" * 1000)[5:]
        assert stream.read() == b""
    ref.delete()
    with pytest.raises(OutputNotFoundError):
        task.get(TASK_OUTPUT, "s.bin")


def test_container_not_prepared(api, azurite):
    storage = api.TaskOutputStorage.from_connection_string(azurite.connection_string, "never-prepared", "t")
    with pytest.raises(ContainerNotFoundError, match="prepare_output_storage"):
        storage.save_text(TASK_OUTPUT, "x", "x.txt")
    with pytest.raises(ContainerNotFoundError):
        list(storage.list())


def test_missing_and_bad_files(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        task.save(TASK_OUTPUT, "nope.txt")
    with pytest.raises(IsADirectoryError):
        task.save(TASK_OUTPUT, tmp_path, "dir")
    for bad in ["", "/abs", "a\x00b", ".."]:
        with pytest.raises(ValueError):
            task.save_text(TASK_OUTPUT, "x", bad)
    with pytest.raises(ValueError, match="block_size"):
        task.save(TASK_OUTPUT, "nope.txt", block_size=0)
    with pytest.raises(TypeError):
        task.save_bytes(TASK_OUTPUT, "text", "x.bin")


def test_bad_ids(api, azurite):
    with pytest.raises(ValueError, match="task id"):
        api.TaskOutputStorage.from_connection_string(azurite.connection_string, "job", "bad task")
    with pytest.raises(ValueError, match="job id"):
        api.JobOutputStorage.from_connection_string(azurite.connection_string, "bad job")


def test_from_environment(api, azurite, service, job_id, monkeypatch):
    for name in [
        "AZ_BATCH_JOB_ID",
        "AZ_BATCH_TASK_ID",
        "BATCHFILES_CONTAINER_URL",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_URL",
    ]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="AZ_BATCH_TASK_ID"):
        api.TaskOutputStorage.from_environment()
    monkeypatch.setenv("AZ_BATCH_TASK_ID", "t9")
    monkeypatch.setenv("AZ_BATCH_JOB_ID", job_id)
    with pytest.raises(ConfigurationError, match=r"CONTAINER_URL.*CONNECTION_STRING"):
        api.TaskOutputStorage.from_environment()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    prepare_output_storage(service, job_id)
    with api.TaskOutputStorage.from_environment() as storage:
        assert storage.save_text(TASK_OUTPUT, "env", "e.txt").blob_name == "t9/$TaskOutput/e.txt"
    with api.JobOutputStorage.from_environment() as storage:
        assert sorted(storage.task_ids()) == ["t9"]


def test_no_key_in_repr_or_messages(api, task, azurite):
    text = repr(task) + task.url
    assert azurite.credential["account_key"] not in text
    try:
        api.TaskOutputStorage.from_connection_string(azurite.connection_string, "never-prepared", "t").get(
            "x", "y"
        )
    except ContainerNotFoundError as err:
        assert azurite.credential["account_key"] not in str(err)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "a", "b c", "ü", "$x", "x.png"]), min_size=1, max_size=6))
def test_destinations_round_trip(task, segments):
    destination = "/".join(segments)
    try:
        expected = naming.destination_path(destination)
    except ValueError:
        with pytest.raises(ValueError):
            task.save_text(TASK_OUTPUT, "x", destination)
        return
    ref = task.save_text(TASK_OUTPUT, destination, destination)
    assert ref.file_path == expected
    assert ref.blob_name == f"task-1/$TaskOutput/{expected}"
    assert task.get(TASK_OUTPUT, expected).download_text() == destination
    if {".", ".."} & set(segments):  # get takes a file path as listed: dot segments are refused, not resolved
        with pytest.raises(ValueError, match="segment"):
            task.get(TASK_OUTPUT, destination)
    else:
        assert task.get(TASK_OUTPUT, destination).download_text() == destination


def test_per_request_md5_is_validated_by_storage(container):
    """The Content-MD5 we send is checked by the server: a wrong one is refused (so ours are right)."""
    blob = container.get_blob_client("task-1/$TaskOutput/check.txt")
    with pytest.raises(Exception, match=r"Md5Mismatch|MD5"):
        blob.upload_blob(
            b"data", headers={"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}
        )


@pytest.mark.apis("sync")  # 8 s; the aio twin saves and reads large files in blocks above, in 4 MiB
def test_200_mib_file_round_trip_with_md5(task, tmp_path):
    path = tmp_path / "big.bin"
    chunk = os.urandom(1024 * 1024)
    digest = hashlib.md5()
    with open(path, "wb") as out:
        for i in range(200):
            piece = bytes([i]) + chunk[1:]
            digest.update(piece)
            out.write(piece)
    ref = task.save(TASK_OUTPUT, path, "big.bin")
    assert ref.size == 200 * 1024 * 1024
    assert ref.content_md5 == digest.digest()
    target = ref.download_to_file(tmp_path / "back.bin")
    with open(target, "rb") as f:
        assert hashlib.file_digest(f, "md5").digest() == digest.digest()


def test_no_sas_signature_in_logs(api, service, prepared, caplog):
    from urllib.parse import parse_qs, quote, urlsplit

    url = output_storage_container_url(service, prepared)
    signature = parse_qs(urlsplit(url).query)["sig"][0]
    with caplog.at_level(logging.DEBUG):
        storage = api.TaskOutputStorage(url, "t1", logging_enable=True)
        ref = storage.save_text(TASK_OUTPUT, "logged", "l.txt")
        assert ref.download_text() == "logged"
        with pytest.raises(OutputNotFoundError):  # a refusal must not log the signature either
            storage.get(TASK_OUTPUT, "missing.txt")
        ref.delete()  # the task SAS may delete (to replace a blob of another type)
    assert caplog.records, "azure-core logged nothing: the test would prove nothing"
    assert signature not in caplog.text
    assert quote(signature, safe="") not in caplog.text


def test_a_failing_progress_callback_stops_the_upload(api, task, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(64 * 64 * 1024))
    calls = []
    # Ctrl-C in the callback. In an event loop, a KeyboardInterrupt ends the loop's run where it is raised
    # (asyncio's rule; asyncio.run then cancels the save): aio's callback fails with an error of its own.
    failure = KeyboardInterrupt if api.name == "sync" else RuntimeError

    def progress(sent, total):
        calls.append(sent)
        raise failure

    with pytest.raises(failure):
        task.save(TASK_OUTPUT, path, "big.bin", block_size=64 * 1024, max_concurrency=2, progress=progress)
    assert len(calls) <= 4  # each worker stops after its current block, not after all 64
    with pytest.raises(OutputNotFoundError):
        task.get(TASK_OUTPUT, "big.bin")  # nothing committed


def test_other_conflicts_are_not_called_exists(task, container):
    ref = task.save_text(TASK_OUTPUT, "x", "snap.txt")
    container.get_blob_client(ref.blob_name).create_snapshot()
    with pytest.raises(BatchFilesError) as info:
        ref.delete()  # refused: the blob has snapshots (409 SnapshotsPresent)
    assert not isinstance(info.value, OutputExistsError)
    assert "SnapshotsPresent" in str(info.value)


def test_sas_over_http_is_refused_whatever_the_constructor(api):
    conn = "BlobEndpoint=http://example.com/;SharedAccessSignature=sv=2025-01-05&sig=SECRET"
    with pytest.raises(ValueError, match="https") as info:
        api.TaskOutputStorage.from_connection_string(conn, "job", "t1")
    assert "SECRET" not in str(info.value)
    with (
        api.BlobServiceClient("http://example.com/?sv=1&sig=SECRET") as service,
        pytest.raises(ValueError, match="https"),
    ):
        api.TaskOutputStorage.from_service(service, "job", "t1")
    for host in ["localhost.", "[::ffff:127.0.0.1]", "[::1]"]:
        api.TaskOutputStorage(f"http://{host}:1/acct/job-x?sv=1&SIG=x", "t1").close()


def test_environment_url_of_another_job_is_refused(api, monkeypatch, service, prepared):
    job_id = prepared
    url = output_storage_container_url(service, job_id)
    monkeypatch.setenv("BATCHFILES_CONTAINER_URL", url)
    monkeypatch.setenv("AZ_BATCH_TASK_ID", "t1")
    monkeypatch.setenv("AZ_BATCH_JOB_ID", "another-job")
    with pytest.raises(ConfigurationError, match="another job") as info:
        api.TaskOutputStorage.from_environment()
    assert "sig=" not in str(info.value) + repr(info.value)
    monkeypatch.setenv("AZ_BATCH_JOB_ID", job_id)
    api.TaskOutputStorage.from_environment().close()


def test_task_ids_are_only_task_folders(job, container):
    container.upload_blob("random folder/x.txt", b"x")
    container.upload_blob("$JobOutput/y.txt", b"y")
    container.upload_blob("t1/$TaskOutput/z.txt", b"z")
    assert list(job.task_ids()) == ["t1"]


def test_job_listing_of_task_kinds_round_trips(job, container):
    container.upload_blob("$TaskOutput/odd.txt", b"odd")  # a job-level blob under a task kind's name
    (ref,) = job.list()
    assert job.get(ref.kind, ref.file_path).download_text() == "odd"


@pytest.mark.parametrize(
    ("size", "content_md5"),
    [(0, True), (10, False), (3 * 1024 * 1024 + 1, True), (3 * 1024 * 1024 + 1, False)],
)
def test_saved_reference_equals_what_storage_reports(task, tmp_path, size, content_md5):
    path = tmp_path / "f.json"
    path.write_bytes(os.urandom(size))
    saved = task.save(TASK_OUTPUT, path, "f.json", block_size=1024 * 1024, content_md5=content_md5)
    fetched = task.get(TASK_OUTPUT, "f.json")
    for name in [
        "kind",
        "file_path",
        "blob_name",
        "url",
        "size",
        "content_md5",
        "content_type",
        "last_modified",
    ]:
        assert getattr(saved, name) == getattr(fetched, name), name
