"""Reading what others wrote: blob names with dot segments, gzip-encoded blobs, long names (sync and aio).

A task holding the job's SAS can store ``t1/$TaskOutput/../../loot.txt`` through raw HTTP. Such a blob is
not an output: ``list()`` skips and reports it, ``get`` refuses dot segments, and no reference (so no
download, no request URL) is ever made of it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import ntpath
import os
import posixpath
import uuid
from pathlib import Path
from types import SimpleNamespace

import hostile
import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings
from batchfiles import (
    IntegrityError,
    TaskOutputKind,
    TaskOutputStorage,
    _download,
    _scope,
    aio,
    naming,
    prepare_output_storage,
)
from batchfiles.testing import Azurite
from helpers import TASK
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TASK_OUTPUT = TaskOutputKind.TASK_OUTPUT

#: Blobs no batchfiles save can make, and why each is not an output.
HOSTILE = {
    "t1/$TaskOutput/../../loot.txt": "its file path has a '..' segment",
    "t1/$TaskOutput/../../../../../../etc/loot2.txt": "its file path has a '..' segment",
    "t1/$TaskOutput/q/../b": "its file path has a '..' segment",
    "t1/$TaskOutput/q/./z": "its file path has a '.' segment",
    "t1/$TaskOutput/..": "its file path has a '..' segment",
    "t1/$TaskOutput//lead": "its file path is absolute",
    "t1/$TaskOutput/a//d": "its file path has an empty segment",
    "t1/$TaskOutput/x/": "its file path has an empty segment",
    "t1/$TaskOutput/tab\tx": "its file path has a control character",
}
#: Outputs in normal form, some of which the hostile names above would read instead (``q/../b`` is ``b``).
LEGIT = ["t1/$TaskOutput/b", "t1/$TaskOutput/q/z", "t1/$TaskOutput/%2E%2E/x.txt", "t1/$TaskOutput/loot.txt"]


def content(name: str) -> bytes:
    return f"the bytes of {name!r}".encode()


@pytest.fixture
def sas(service: BlobServiceClient, job_id: str) -> str:
    """A prepared job holding the hostile and legitimate blobs; its container URL with a SAS."""
    prepare_output_storage(service, job_id)
    url = hostile.sas_url(service, job_id)
    for name in [*HOSTILE, *LEGIT]:
        assert hostile.put(url, name, content(name)) == 201, name
    container = service.get_container_client(naming.container_name(job_id))
    assert sorted(b.name for b in container.list_blobs()) == sorted([*HOSTILE, *LEGIT])
    return url


def test_list_skips_and_reports_every_blob_not_in_normal_form(sas):
    requested: list[str] = []
    hook = {"raw_request_hook": lambda request: requested.append(request.http_request.url)}
    with TaskOutputStorage(sas, "t1", **hook) as task:
        skipped: list[tuple[str, str]] = []
        refs = list(task.list(on_invalid=lambda name, reason: skipped.append((name, reason))))
        assert sorted(skipped) == sorted(HOSTILE.items())
        assert sorted(r.blob_name for r in refs) == sorted(LEGIT)
        for ref in refs:
            assert ref.blob_name == f"t1/$TaskOutput/{ref.file_path}"
            assert ref.download_bytes() == content(ref.blob_name) == hostile.get(sas, ref.blob_name)
            with ref.open() as stream:
                assert stream.read() == content(ref.blob_name)
        assert [r.file_path for r in task.list(TASK_OUTPUT, on_invalid=lambda *_: None)] == [
            "%2E%2E/x.txt",
            "b",
            "loot.txt",
            "q/z",
        ]
    assert requested
    for url in requested:  # no request ever named a dot segment for urllib3 to resolve into another blob
        segments = url.split("?")[0].split("/")
        assert "." not in segments and ".." not in segments, url


def test_list_warns_by_default_on_the_batchfiles_logger(sas, caplog):
    with TaskOutputStorage(sas, "t1") as task, caplog.at_level(logging.WARNING, logger="batchfiles"):
        assert len(list(task.list())) == len(LEGIT)
    warnings = [r for r in caplog.records if r.name == "batchfiles"]
    assert sorted(r.getMessage() for r in warnings) == sorted(
        f"skipped blob {name!r}: {reason}" for name, reason in HOSTILE.items()
    )
    assert all("\t" not in r.getMessage() for r in warnings)  # control characters escaped


def test_the_readme_loop_stays_in_its_folder(sas, tmp_path, caplog):
    out = tmp_path / "deep" / "out"
    with TaskOutputStorage(sas, "t1") as task, caplog.at_level(logging.ERROR, logger="batchfiles"):
        for ref in task.list():
            ref.download_to_file(f"{out}/t1/{ref.kind}/{ref.file_path}")
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"deep/out/t1/TaskOutput/{name.split('/', 2)[2]}" for name in LEGIT)
    for name in LEGIT:
        assert (out / "t1/TaskOutput" / name.split("/", 2)[2]).read_bytes() == content(name)


def test_get_refuses_dot_segments(sas):
    with TaskOutputStorage(sas, "t1") as task:
        for path in ["q/../b", "./b", "q\\..\\b", "..", "q/.", "../../loot.txt"]:
            with pytest.raises(ValueError, match=r"'\.' or '\.\.' segment"):
                task.get(TASK_OUTPUT, path)
        assert task.get(TASK_OUTPUT, "b").download_bytes() == content("t1/$TaskOutput/b")
        assert task.get(TASK_OUTPUT, "q\\z").blob_name == "t1/$TaskOutput/q/z"  # '\' separates, as in save


def test_no_reference_can_be_built_of_a_name_not_in_normal_form():
    scope = _scope.Scope("job-x", "t1")
    for name, reason in HOSTILE.items():
        props = SimpleNamespace(name=name, content_settings=None, size=1, last_modified=None)
        with pytest.raises(ValueError, match="is not an output") as err:
            _scope.reference_of(scope, f"http://127.0.0.1/job-x/{name}", props)
        assert reason in str(err.value)
        with pytest.raises(_scope.NotAnOutput):
            _scope.reference_info(scope, f"http://127.0.0.1/job-x/{name}", props)
    with pytest.raises(ValueError, match=r"'\.\.' segment"):
        _scope.ReferenceInfo(TASK_OUTPUT, "q/../b", "t1/$TaskOutput/q/../b", "u", 1, None, None, None)
    with pytest.raises(ValueError, match="not the end of its blob name"):
        _scope.ReferenceInfo(TASK_OUTPUT, "b", "t1/$TaskOutput/q/../b", "u", 1, None, None, None)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([".", "..", "", "a", "x.txt", "\\", "c:", " ", "\t", "%2E", "ü"]), max_size=5)
)
def test_path_problem_is_exactly_the_normal_form(segments):
    path = "/".join(segments)
    try:
        normal = naming.destination_path(path) == path
    except ValueError:
        normal = False
    problem = _scope.path_problem(path)
    assert (problem is None) == normal
    assert problem != "is not in normal form"  # every refusal says why


# --- a property: whatever the names, nothing escapes and every reference reads its own blob ---------------

SEGMENTS = [".", "..", "", "%2E%2E", "%2e", "a", "b", "x.txt", "\\", "..\\..", "\t", " ", "c:", "ü"]


@pytest.fixture(scope="module")
def shared(azurite: Azurite):
    """One container for every example of the property (each example uses a task id of its own)."""
    job_id = f"hostile-{uuid.uuid4().hex[:8]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        prepare_output_storage(service, job_id)
        yield hostile.sas_url(service, job_id), service.get_container_client(naming.container_name(job_id))


def escapes(path: str) -> bool:
    """Whether ``path`` joined to a folder could land outside it here (a drive prefix only on Windows, where
    the conventions' normalisation refuses it too; on Linux ``c:`` is a plain name)."""
    windows_absolute = os.name == "nt" and (ntpath.isabs(path) or ntpath.splitdrive(path)[0])
    if posixpath.isabs(path) or windows_absolute:
        return True
    for normal in (posixpath.normpath(path), ntpath.normpath(path).replace("\\", "/")):
        if normal == ".." or normal.startswith("../") or normal != path:
            return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5), min_size=1, max_size=4))
def test_listed_references_never_escape_and_read_their_own_blob(shared, tmp_path, paths):
    url, container = shared
    task_id = f"t{uuid.uuid4().hex[:12]}"
    for i, segments in enumerate(paths):
        name = f"{task_id}/$TaskOutput/" + "/".join(segments)
        hostile.put(url, name, f"{i}: {name!r}".encode())  # storage may refuse or fold some; that is fine
    stored = {b.name for b in container.list_blobs(name_starts_with=f"{task_id}/$")}
    skipped: list[str] = []
    with TaskOutputStorage(url, task_id) as task:
        refs = list(task.list(on_invalid=lambda name, reason: skipped.append(name)))
        assert sorted([r.blob_name for r in refs] + skipped) == sorted(stored)  # nothing lost
        root = tmp_path / uuid.uuid4().hex
        for ref in refs:
            assert not escapes(ref.file_path), ref.file_path
            assert (root / ref.file_path).resolve().is_relative_to(root.resolve())
            assert ref.download_bytes() == hostile.get(url, ref.blob_name)


# --- Content-Encoding: gzip, and long names -----------------------------------------------------------------

GZ = gzip.compress(b"plain text, compressed " * 100)


def gzip_blob(container, name: str) -> None:
    """A blob as another tool stores it: gzip bytes, Content-Encoding gzip, the MD5 of the stored bytes."""
    settings = ContentSettings(
        content_type="text/plain", content_encoding="gzip", content_md5=bytearray(hashlib.md5(GZ).digest())
    )
    container.get_blob_client(name).upload_blob(GZ, content_settings=settings)


@pytest.mark.apis("sync", "aio")
def test_gzip_encoded_blobs_download_as_stored(task, container, tmp_path):
    gzip_blob(container, f"{TASK}/$TaskOutput/log.txt.gz")
    ref = task.get(TASK_OUTPUT, "log.txt.gz")
    assert ref.download_bytes() == GZ
    assert ref.download_to_file(tmp_path / "log.txt.gz").read_bytes() == GZ
    with ref.open() as stream:
        assert stream.read() == GZ
    assert gzip.decompress(GZ).startswith(b"plain text")


@pytest.mark.apis("sync", "aio")
def test_a_250_byte_file_name_downloads(task, container, tmp_path):
    name = "n" * 246 + ".bin"
    data = b"long" * 1000
    ref = task.save_bytes(TASK_OUTPUT, data, name)
    assert ref.download_to_file(tmp_path / name).read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [name]
    blob = container.get_blob_client(ref.blob_name)
    blob.set_http_headers(ContentSettings(content_md5=bytearray(hashlib.md5(b"other").digest())))
    with pytest.raises(IntegrityError):
        ref.download_to_file(tmp_path / "again" / name)
    assert not list((tmp_path / "again").iterdir())  # the partial file is gone too


# --- aio ----------------------------------------------------------------------------------------------------


def test_aio_hostile_names(sas, tmp_path):
    async def main():
        async with aio.TaskOutputStorage(sas, "t1") as task:
            skipped: list[tuple[str, str]] = []
            refs = [
                r async for r in task.list(on_invalid=lambda name, reason: skipped.append((name, reason)))
            ]
            assert sorted(skipped) == sorted(HOSTILE.items())
            assert sorted(r.blob_name for r in refs) == sorted(LEGIT)
            for ref in refs:
                assert await ref.download_bytes() == content(ref.blob_name)
                target = await ref.download_to_file(tmp_path / "out" / ref.file_path)
                assert target.read_bytes() == content(ref.blob_name)
            with pytest.raises(ValueError, match="segment"):
                await task.get(TASK_OUTPUT, "q/../b")
            assert await (await task.get(TASK_OUTPUT, "b")).download_bytes() == content("t1/$TaskOutput/b")

    asyncio.run(main())
    assert all(p.resolve().is_relative_to((tmp_path / "out").resolve()) for p in tmp_path.rglob("*"))


def test_partial_names_are_short_and_unique(tmp_path):
    partials = [_download.open_partial(tmp_path) for _ in range(50)]
    for _, file in partials:
        file.close()
    names = {path.name for path, _ in partials}
    assert len(names) == 50 and all(
        len(n) < 30 and n.startswith(".") and n.endswith(".partial") for n in names
    )
    assert Path(tmp_path).joinpath(names.pop()).stat().st_size == 0
