"""Cleaning up: ``JobOutputStorage.delete`` / ``delete_container`` (and the aio twins) and ``batchfiles
delete``: selection by task, kind and path; a tracked log's parts deleted together; hostile blobs never
deleted by a selection that did not name them; a SAS that may not delete refused clearly, without its
signature; ``--yes`` off a terminal, a prompt on one; faults mid-delete end in everything deleted or a clear
error, never a false success."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import hostile
import pytest
from azure.storage.blob import (
    AccessPolicy,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    generate_container_sas,
)
from batchfiles import (
    AuthenticationError,
    BatchFilesError,
    ContainerNotFoundError,
    DeleteError,
    JobOutputStorage,
    _deleting,
    _throttle,
    aio,
    output_storage_container_url,
    prepare_output_storage,
)
from batchfiles._tracking import limits
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy, Request
from helpers import PATIENCE, assert_one_line_error, cli, command, default_sigint
from hypothesis import given, settings
from hypothesis import strategies as st

TASKS = ("t1", "t2", "t10")


@pytest.fixture
def upstream_service(upstream: Azurite) -> Iterator[BlobServiceClient]:
    """Azurite itself, past the strict proxy of the strict pass: names as a hostile task stores them (the
    service would drop a segment's trailing dots; Azurite keeps them, so such a blob can sit beside its
    look-alike)."""
    with BlobServiceClient.from_connection_string(upstream.connection_string) as client:
        yield client


def populate(job: JobOutputStorage) -> None:
    job.save_text("JobOutput", "movie", "movie.mp4")
    for task in TASKS:
        storage = job.task(task)
        storage.save_text("TaskOutput", f"{task} a", "a.txt")
        storage.save_text("TaskOutput", "frame", "frames/1.png")
        storage.save_text("TaskPreview", "p", "thumb.png")
        storage.save_text("TaskLog", "log", "stdout.txt")


def names(container: ContainerClient) -> set[str]:
    return {blob.name for blob in container.list_blobs()}


def sas_url(container: ContainerClient, *, permission: str | None = None, policy: str | None = None) -> str:
    sas = generate_container_sas(
        ACCOUNT_NAME,
        container.container_name,
        account_key=ACCOUNT_KEY,
        permission=permission,
        policy_id=policy,
        expiry=None if policy else datetime.now(timezone.utc) + timedelta(hours=2),
    )
    return f"{container.url}?{sas}"


def signature(url: str) -> str:
    return parse_qs(urlsplit(url).query)["sig"][0]


def through(proxy: FaultProxy, azurite: Azurite) -> str:
    """The connection string of ``azurite`` through ``proxy``."""
    return azurite.connection_string.replace(azurite.account_url, proxy.url_for(ACCOUNT_NAME))


def is_delete(request: Request) -> bool:
    return request.method == "DELETE"


def first_deletes() -> Callable[[Request], bool]:
    """A rule's match for the first DELETE of each blob (shared by rules: each blob meets one fault at most,
    so the client's retries see it through)."""
    seen: set[str] = set()

    def match(request: Request) -> bool:
        if request.method != "DELETE" or request.path in seen:
            return False
        seen.add(request.path)
        return True

    return match


# --- the command line: selection, count, confirmation ------------------------------------------------------


def test_delete_selects_by_task_kind_and_path(env, job, container, job_id):
    populate(job)
    every = names(container)

    one = cli("delete", job_id, "--task", "t1", "--kind", "TaskOutput", "a.txt", "--yes", env=env)
    assert one.returncode == 0, one.stderr
    assert f"deleting 1 output (1 blob, 4 B) of job {job_id!r}" in one.stderr
    assert names(container) == every - {"t1/$TaskOutput/a.txt"}

    previews = cli("delete", job_id, "--kind", "TaskPreview", "--yes", env=env)
    assert previews.returncode == 0, previews.stderr
    assert "3 outputs (3 blobs, 3 B)" in previews.stderr
    assert not any("$TaskPreview" in name for name in names(container))

    two = cli("delete", job_id, "--task", "t2", "--task", "t10", "--task", "t2", "--yes", env=env)
    assert two.returncode == 0, two.stderr
    assert "6 outputs (6 blobs" in two.stderr
    assert {name.partition("/")[0] for name in names(container)} == {"$JobOutput", "t1"}

    frames = cli("delete", job_id, "frames/1.png", "--yes", env=env)  # a path, of every task still there
    assert frames.returncode == 0, frames.stderr
    assert names(container) == {"$JobOutput/movie.mp4", "t1/$TaskLog/stdout.txt"}

    rest = cli("delete", job_id, "--yes", env=env)  # everything: the job's own outputs too
    assert rest.returncode == 0, rest.stderr
    assert "2 outputs (2 blobs, 8 B)" in rest.stderr and "deleted 2 outputs" in rest.stderr
    assert names(container) == set()

    again = cli("delete", job_id, "--yes", env=env)
    assert again.returncode == 0 and "nothing to delete" in again.stderr


def test_what_the_command_line_names_must_exist(env, job, container, job_id):
    populate(job)
    every = names(container)
    missing = cli("delete", job_id, "--task", "t1", "a.txt", "nope.txt", "--yes", env=env)
    assert_one_line_error(missing, 1, "nothing deleted", "no output at 'nope.txt'")
    no_task = cli("delete", job_id, "--task", "t1", "--task", "t9", "--yes", env=env)
    assert_one_line_error(no_task, 1, "no outputs of task 't9'")
    assert names(container) == every

    for args in (["--container", "--task", "t1"], ["--kind", "JobOutput", "--task", "t1"]):
        assert_one_line_error(cli("delete", job_id, *args, "--yes", env=env), 2)
    dotted = cli("delete", job_id, "q/../a.txt", "--yes", env=env)
    assert_one_line_error(dotted, 1, "normal form")
    assert names(container) == every


def test_yes_is_needed_off_a_terminal(env, bare_env, job, container, job_id):
    populate(job)
    every = names(container)
    refused = cli("delete", job_id, env=env)
    assert_one_line_error(refused, 2, "not a terminal", "--yes")
    piped = cli("delete", job_id, "--container", env=bare_env, stdin="y\n")  # a pipe: no one to ask
    assert_one_line_error(piped, 2, "--yes")  # before storage is even looked for
    assert names(container) == every


def on_terminal(args: list[str], env: dict[str, str], answer: bytes) -> subprocess.CompletedProcess[str]:
    """Run with stdin on a pseudo-terminal, typing ``answer``; stdout and stderr as text."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            args,
            env=env,
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        os.write(master, answer)
        out, err = proc.communicate(timeout=PATIENCE)
    finally:
        os.close(slave)
        os.close(master)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_it_asks_with_the_count(env, job, container, job_id):
    populate(job)
    every = names(container)
    no = on_terminal(command("delete", job_id, "--task", "t1"), env, b"n\n")
    assert no.returncode == 1, no.stderr
    assert f"delete 4 outputs (4 blobs, 13 B) of job {job_id!r}? [y/N]" in no.stderr
    assert "nothing deleted" in no.stderr
    eof = on_terminal(command("delete", job_id, "--task", "t1"), env, b"\x04")  # Ctrl-D
    assert eof.returncode == 1 and "nothing deleted" in eof.stderr
    assert names(container) == every

    yes = on_terminal(command("delete", job_id, "--task", "t1"), env, b"y\n")
    assert yes.returncode == 0, yes.stderr
    assert "deleted 4 outputs" in yes.stderr
    assert not any(name.startswith("t1/") for name in names(container))


# --- what is deleted together, and what never is ----------------------------------------------------------


def test_a_tracked_log_in_parts_is_deleted_whole(job, container, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)  # a part a flush
    log = tmp_path / "stdout.txt"
    save = job.task("t1").save_tracked(log, "stdout.txt", flush_interval=3600, settle=0)
    for line in (b"one\n", b"two\n", b"three\n"):
        with log.open("ab") as file:
            file.write(line)
        save.flush()
    save.close()
    job.task("t1").save_text("TaskOutput", "x", "x.txt")
    snap = job.snapshot()
    (stdout,) = snap.tasks["t1"].of_kind("TaskLog")
    assert stdout.blob_names == tuple(f"t1/$TaskLog/stdout.txt{s}" for s in ("", ".1", ".2"))
    assert len(stdout.etags) == 3 and all(stdout.etags)

    assert job.delete([stdout, stdout]) == 3  # given twice: deleted once
    assert names(container) == {"t1/$TaskOutput/x.txt"}


def test_a_live_log_written_since_it_was_listed_is_left_whole(job, container, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_BLOCKS", 2)
    log = tmp_path / "stdout.txt"
    save = job.task("t1").save_tracked(log, "stdout.txt", flush_interval=3600, settle=0)
    try:
        for line in (b"one\n", b"two\n", b"three\n"):  # parts: 2 blocks, then 1 (room for one more)
            with log.open("ab") as file:
                file.write(line)
            save.flush()
        job.task("t1").save_text("TaskOutput", "x", "x.txt")
        snap = job.snapshot()
        (stdout,) = snap.tasks["t1"].of_kind("TaskLog")
        assert stdout.parts == ("t1/$TaskLog/stdout.txt.1",) and stdout.log.state == "open"
        with log.open("ab") as file:
            file.write(b"four\n")
        save.flush()  # appended to the last part listed
        with pytest.raises(DeleteError) as refused:
            job.delete(snap.all_outputs())
        assert "changed since it was listed" in str(refused.value)
        assert list(refused.value.failures) == ["t1/$TaskLog/stdout.txt.1"] and refused.value.deleted == 1
        assert names(container) == set(stdout.blob_names)  # the log whole; x.txt deleted

        snap = job.snapshot()
        (stdout,) = snap.tasks["t1"].of_kind("TaskLog")
        with log.open("ab") as file:
            file.write(b"five\n")
        save.flush()  # the last part was full: a new part, which the listing did not see
        with pytest.raises(DeleteError, match=r"went on in 't1/\$TaskLog/stdout\.txt\.2'"):
            job.delete([stdout])
        assert names(container) == {f"t1/$TaskLog/stdout.txt{s}" for s in ("", ".1", ".2")}
    finally:
        save.close()
    (stdout,) = job.snapshot().tasks["t1"].of_kind("TaskLog")
    assert stdout.log.state == "closed" and job.delete([stdout]) == 3
    assert names(container) == set()


#: Blobs a hostile task could store beside ``t1/$TaskOutput/a``, none of which a selection of that output,
#: of t1's TaskOutput outputs or of anything else may delete: not outputs at all (dot segments, a trailing
#: dot, an empty segment), or outputs of another kind, task or path (names differing only in case).
NOT_OUTPUTS = [
    "t1/$TaskOutput/../a",
    "t1/$TaskOutput/./a",
    "t1/$TaskOutput/a.",
    "t1/$TaskOutput/x./a",
    "t1/$TaskOutput//a",
    "t1/$TaskOutput/../../t2/$TaskOutput/a",
]
OTHER_OUTPUTS = ["t1/$TaskOutputX/a", "t1/$taskoutput/a", "T1/$TaskOutput/a", "t1/$TaskOutput/A"]


def test_a_hostile_blob_is_never_deleted_by_a_selection_that_did_not_name_it(
    env, job, container, upstream_service, job_id
):
    url = hostile.sas_url(upstream_service, job_id)
    for name in [*NOT_OUTPUTS, *OTHER_OUTPUTS]:
        assert hostile.put(url, name, name.encode()) == 201, name
    job.task("t1").save_text("TaskOutput", "legit", "a")
    job.task("t2").save_text("TaskOutput", "legit", "a")
    upstream_container = upstream_service.get_container_client(container.container_name)
    every = {blob.name for blob in upstream_container.list_blobs()}
    assert every >= {*NOT_OUTPUTS, *OTHER_OUTPUTS}

    one = cli("delete", job_id, "--task", "t1", "--kind", "TaskOutput", "a", "--yes", env=env)
    assert one.returncode == 0, one.stderr
    assert "deleting 1 output (1 blob" in one.stderr
    left = {blob.name for blob in upstream_container.list_blobs()}
    assert left == every - {"t1/$TaskOutput/a"}
    for name in NOT_OUTPUTS:  # each reported as left, once
        assert one.stderr.count(f"left blob {name!r}: not an output") == 1, (name, one.stderr)
        assert hostile.get(url, name) == name.encode()

    everything = cli("delete", job_id, "--yes", env=env)  # every output: the look-alikes are outputs
    assert everything.returncode == 0, everything.stderr
    assert {blob.name for blob in upstream_container.list_blobs()} == set(NOT_OUTPUTS)

    whole = cli("delete", job_id, "--container", "--yes", env=env)  # names everything: deletes it all
    assert whole.returncode == 0, whole.stderr
    assert f"0 outputs (0 blobs, 0 B) and {len(NOT_OUTPUTS)} other blobs" in whole.stderr
    assert not container.exists()


def test_the_library_deletes_only_outputs_of_its_own_snapshot(job, azurite, service, container, job_id):
    populate(job)
    snap = job.snapshot()
    output = snap.find("t1", "TaskOutput", "a.txt")
    assert output is not None
    forged = [
        dataclasses.replace(output, file_path="../a.txt", blob_name="t1/$TaskOutput/../a.txt"),
        dataclasses.replace(output, file_path="a.txt.", blob_name="t1/$TaskOutput/a.txt."),
        dataclasses.replace(output, blob_name="t2/$TaskOutput/a.txt"),  # not the blob of its task and path
        dataclasses.replace(output, task_id="t2"),  # t2's path: another blob
        dataclasses.replace(output, url=output.url.replace(job.container_name, "job-other")),
        dataclasses.replace(output, parts=("t1/$TaskOutput/other",), etags=("1", "2")),
        dataclasses.replace(output, etags=()),
    ]
    for bad in forged:
        with pytest.raises(ValueError):
            job.delete([bad])
    with pytest.raises(TypeError):
        job.delete(["t1/$TaskOutput/a.txt"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        job.delete([output], max_concurrency=0)
    prepare_output_storage(service, f"{job_id}-b")
    other = JobOutputStorage.from_connection_string(azurite.connection_string, f"{job_id}-b")
    with other, pytest.raises(ValueError, match="not listed from this storage's container"):
        other.delete([output])
    assert "t1/$TaskOutput/a.txt" in names(container)
    assert job.delete([output]) == 1


def test_snapshots_and_leases_are_never_deleted_silently(job, container):
    populate(job)
    snapped = container.get_blob_client("t1/$TaskOutput/a.txt")
    snapped.create_snapshot()
    leased = container.get_blob_client("t2/$TaskOutput/a.txt")
    lease = leased.acquire_lease()
    try:
        with pytest.raises(DeleteError) as refused:
            job.delete(job.snapshot().all_outputs())
    finally:
        lease.release()
    error = refused.value
    assert set(error.failures) == {snapped.blob_name, leased.blob_name}
    assert "has snapshots" in str(error.failures[snapped.blob_name])
    assert "is leased" in str(error.failures[leased.blob_name])
    assert error.deleted == 13 - 2 and "2 of 13 blobs left (11 deleted)" in str(error)
    assert {blob.name for blob in container.list_blobs()} == {snapped.blob_name, leased.blob_name}


# --- credentials ------------------------------------------------------------------------------------------


def test_a_sas_without_delete_is_refused_before_any_request(azurite, env, bare_env, job, container, job_id):
    populate(job)
    every = names(container)
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        url = sas_url(container, permission="racwl").replace(azurite.account_url, proxy.url_for(ACCOUNT_NAME))
        for args in (["--task", "t1"], ["--container"]):
            result = cli("delete", job_id, *args, "--container-url", url, "--yes", env=bare_env)
            line = assert_one_line_error(result, 1, "may not delete", "sp=racwl", "'d'")
            assert signature(url) not in result.stdout + result.stderr
            assert "sig=" not in line
        with JobOutputStorage(url) as storage:
            for attempt in (lambda: storage.delete([]), storage.delete_container):
                with pytest.raises(AuthenticationError, match="sp=racwl") as refused:
                    attempt()
                assert signature(url) not in str(refused.value)
        assert proxy.counts["requests"] == 0
    assert names(container) == every


def test_a_container_sas_may_delete_blobs_but_never_its_container(
    azurite, bare_env, env, service, job, container, job_id
):
    populate(job)
    task_sas = output_storage_container_url(service, job_id)  # racwdl: deletes blobs (issue 19)
    assert "d" in parse_qs(urlsplit(task_sas).query)["sp"][0]
    with FaultProxy(azurite.port, deadline_s=120) as proxy:
        url = task_sas.replace(azurite.account_url, proxy.url_for(ACCOUNT_NAME))
        refused = cli("delete", job_id, "--container", "--container-url", url, "--yes", env=bare_env)
        assert_one_line_error(refused, 1, "SAS for the container (sr=c)", "may not delete container")
        assert signature(url) not in refused.stdout + refused.stderr
        assert proxy.counts["requests"] == 0
        one = cli("delete", job_id, "--task", "t1", "--container-url", url, "--yes", env=bare_env)
        assert one.returncode == 0, one.stderr
    assert container.exists() and not any(name.startswith("t1/") for name in names(container))

    whole = cli("delete", job_id, "--container", "--yes", env=env)  # the account's connection string
    assert whole.returncode == 0, whole.stderr
    assert "deleted container" in whole.stderr and not container.exists()
    gone = cli("delete", job_id, "--container", "--yes", env=env)
    assert_one_line_error(gone, 1, "does not exist")


def test_a_refusal_the_sas_does_not_show_is_translated(azurite, bare_env, job, container, job_id):
    """A SAS of a stored access policy (si=, no sp=): its permissions are only known to storage, whose
    403 is said as clearly, without a traceback or the signature."""
    populate(job)
    every = names(container)
    policy = AccessPolicy(
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=2),
    )
    container.set_container_access_policy({"readers": policy})
    url = sas_url(container, policy="readers")
    assert "sp=" not in url
    result = cli("delete", job_id, "-q", "--task", "t1", "--container-url", url, "--yes", env=bare_env)
    line = assert_one_line_error(result, 1, "storage refused to delete", "AuthorizationPermissionMismatch")
    assert "delete permission" in line and signature(url) not in result.stdout + result.stderr
    with JobOutputStorage(url) as storage:
        with pytest.raises(AuthenticationError, match="delete permission"):
            storage.delete(storage.snapshot().all_outputs())
        with pytest.raises(AuthenticationError):
            storage.delete_container()
    assert names(container) == every


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="racwdlxyti", max_size=8),
    st.sampled_from([None, "c", "b"]),
    st.sampled_from([None, "sco", "o"]),
    st.text(alphabet="ABCDEFabcdef0123456789+/=", min_size=8, max_size=20),
)
def test_what_a_sas_shows_it_may_not_delete(
    permissions: str, resource: str | None, types: str | None, secret: str
) -> None:
    query = f"sv=2025-01-05&sp={permissions}&sig={secret}"
    query += f"&sr={resource}" if resource else ""
    query += f"&srt={types}&ss=b" if types and not resource else ""
    url = f"https://acct.blob.core.windows.net/job-x?{query}"
    for container in (False, True):
        try:
            _deleting.check_permission(url, None, "job-x", container=container)
        except AuthenticationError as err:
            assert secret not in str(err)
            may_not = "d" not in permissions or (
                container and (resource is not None or (types is not None and "c" not in types))
            )
            assert may_not, (query, container, err)
        else:
            assert "d" in permissions
            assert not container or (resource is None and (types is None or "c" in types))
    _deleting.check_permission(
        url.partition("?")[0], None, "job-x", container=True
    )  # no SAS: storage decides


# --- faults mid-delete --------------------------------------------------------------------------------------


@pytest.fixture
def fast_throttling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_throttle, "THROTTLED_WINDOW", (0.01, 0.01))  # a 503 is throttling: waits shrunk
    monkeypatch.setattr(_throttle, "NO_RETRY_AFTER", 0.01)
    monkeypatch.setattr(_throttle, "FIRST_GAP", 0.01)  # and the spacing of new requests after one


def test_resets_5xx_and_lost_answers_end_with_everything_deleted(
    azurite, job, container, job_id, fast_throttling
):
    populate(job)
    for i in range(30):
        job.task(f"t{i % 3}").save_text("TaskIntermediate", str(i), f"{i}.bin")
    snap = job.snapshot()
    total = sum(len(output.blob_names) for output in snap.all_outputs())
    with FaultProxy(azurite.port, seed=5, deadline_s=300) as proxy:
        first = first_deletes()
        for fault, times, status in (("reset", 3, 503), ("status", 3, 500), ("status", 2, 503)):
            proxy.add_rule(fault, first, times=times, status=status)
        proxy.add_rule("drop_response", first, times=10)  # deleted, answer lost: the retry finds it gone
        options = {"initial_backoff": 0.01, "increment_base": 1.1}
        with JobOutputStorage.from_connection_string(through(proxy, azurite), job_id, **options) as faulty:
            assert faulty.delete(snap.all_outputs(), max_concurrency=4) == total
        assert (proxy.counts["reset"], proxy.counts["status"], proxy.counts["drop_response"]) == (3, 5, 10)
    assert names(container) == set()


def test_a_storage_that_keeps_failing_is_an_error_not_a_success(
    azurite, env, job, container, job_id, fast_throttling
):
    populate(job)
    every = names(container)
    snap = job.snapshot()
    with FaultProxy(azurite.port, deadline_s=300) as proxy:
        deletes = itertools.count()
        proxy.add_rule("status", lambda r: is_delete(r) and next(deletes) >= 3, status=500)  # after 3
        conn = through(proxy, azurite)
        options = {"retry_total": 1, "initial_backoff": 0.01}
        faulty = JobOutputStorage.from_connection_string(conn, job_id, **options)
        with faulty, pytest.raises(BatchFilesError) as failed:
            faulty.delete(snap.all_outputs(), max_concurrency=1)
        assert not isinstance(failed.value, DeleteError)  # stopped: not a refusal of one blob
        assert "InternalError" in str(failed.value)
        assert "(3 of 13 blobs were deleted before it)" in str(failed.value)
        assert len(names(container)) == len(every) - 3

        result = cli("delete", job_id, "-q", "--yes", env={**env, "AZURE_STORAGE_CONNECTION_STRING": conn})
        assert_one_line_error(result, 1, "InternalError")
    assert len(names(container)) == len(every) - 3


def test_faults_through_the_command_line_end_in_success_or_a_clear_error(
    azurite, env, job, container, job_id, fast_throttling
):
    populate(job)
    with FaultProxy(azurite.port, seed=11, deadline_s=300) as proxy:
        proxy.add_rule("drop_response", is_delete, times=4)
        proxy.add_rule("reset", is_delete, times=2)
        conn = through(proxy, azurite)
        result = cli("delete", job_id, "--yes", env={**env, "AZURE_STORAGE_CONNECTION_STRING": conn})
        assert result.returncode == 0, result.stderr
        assert "deleted 13 outputs" in result.stderr
    assert names(container) == set()


# --- asyncio ------------------------------------------------------------------------------------------------


def test_the_async_twin(azurite, job, container, job_id, tmp_path, monkeypatch):
    populate(job)
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1)
    log = tmp_path / "log.txt"
    save = job.task("t1").save_tracked(log, "log.txt", flush_interval=3600, settle=0)
    for line in (b"a\n", b"b\n"):
        with log.open("ab") as file:
            file.write(line)
        save.flush()
    save.close()
    readers = sas_url(container, permission="rl")

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as twin:
            snap = await twin.snapshot()
            t1 = snap.tasks["t1"].outputs
            assert sum(len(o.blob_names) for o in t1) == 6  # 4 outputs, one of them a log in 2 parts
            seen["t1"] = await twin.delete(t1, max_concurrency=2)
            job.task("t2").save_text("TaskOutput", "changed", "a.txt")
            with pytest.raises(DeleteError) as refused:
                await twin.delete(snap.tasks["t2"].outputs)
            seen["refused"] = list(refused.value.failures)
        async with aio.JobOutputStorage(readers) as reader:
            with pytest.raises(AuthenticationError, match="sp=rl"):
                reader.check_delete()
            with pytest.raises(AuthenticationError):
                await reader.delete_container()
        async with aio.JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as twin:
            await twin.delete_container()
            await twin.delete_container()  # gone: done
            with pytest.raises(ContainerNotFoundError):
                await twin.snapshot()
        return seen

    seen = asyncio.run(scenario())
    assert seen == {"t1": 6, "refused": ["t2/$TaskOutput/a.txt"]}
    assert not container.exists()


def test_no_delete_of_a_missing_container_is_a_success(env, job_id):
    result = cli("delete", job_id, "--yes", env=env)  # no prepare: no container
    assert_one_line_error(result, 1, "does not exist")
