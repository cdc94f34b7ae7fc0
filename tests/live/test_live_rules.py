"""The service's own rules, where Azurite is more lenient (/work/shared/DESIGN.md), as plain SDK calls.

Each step records the service's answer. The assertions are only what batchfiles relies on; where the service
may answer either way (refuse or accept), the answer is recorded and the tests check that nothing is left
half-done.
"""

from __future__ import annotations

from typing import Any

from azure.storage.blob import BlobClient, ContainerClient
from live_support import Answer, Recorder, attempt, refused

MiB = 1024 * 1024
#: The most metadata a blob may hold: names and values together.
METADATA_LIMIT = 8 * 1024


def _state(blob: BlobClient) -> dict[str, Any]:
    """The blob's type and size, and its content."""
    props = blob.get_blob_properties()
    kind = getattr(props.blob_type, "value", props.blob_type)
    return {"blob_type": kind, "size": props.size, "content": blob.download_blob().readall()}


def _type_change(answers: Recorder, step: str, answer: Answer, blob: BlobClient, before: dict[str, Any]):
    """Record a type change's answer with what the blob is after it, and check it was refused (the blob
    unchanged) or done (the blob now of the other type): never half-done."""
    after = _state(blob)
    answers.record("blob_type", step, {**answer, "after": {k: after[k] for k in ("blob_type", "size")}})
    if refused(answer):
        assert 400 <= answer.get("status", 0) < 500, answer
        assert after == before
    else:
        assert after["blob_type"] != before["blob_type"]


def test_blob_type_changes(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    block = container.get_blob_client(f"{prefix}block-then-append")
    block.upload_blob(b"block blob")
    before = _state(block)
    answer, _ = attempt(block.create_append_blob)
    _type_change(answers, "append_blob_over_block_blob", answer, block, before)

    append = container.get_blob_client(f"{prefix}append-then-block")
    append.create_append_blob()
    append.append_block(b"append blob")
    before = _state(append)
    answer, _ = attempt(append.upload_blob, b"block blob", overwrite=True)
    _type_change(answers, "block_blob_over_append_blob", answer, append, before)

    listed = container.get_blob_client(f"{prefix}append-then-block-list")
    listed.create_append_blob()
    listed.append_block(b"append blob")
    before = _state(listed)
    answer, _ = attempt(listed.stage_block, "YmxvY2stMQ==", b"new block")
    _type_change(answers, "stage_block_on_append_blob", answer, listed, before)
    answer, _ = attempt(listed.commit_block_list, ["YmxvY2stMQ=="])
    _type_change(answers, "commit_block_list_over_append_blob", answer, listed, before)

    appended = container.get_blob_client(f"{prefix}block-then-append-block")
    appended.upload_blob(b"block blob")
    before = _state(appended)
    answer, _ = attempt(appended.append_block, b" appended")
    _type_change(answers, "append_block_on_block_blob", answer, appended, before)


def _listed(container: ContainerClient, prefix: str) -> list[str]:
    return [blob.name[len(prefix) :] for blob in container.list_blobs(name_starts_with=prefix)]


def test_trailing_dots(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    last = f"{prefix}last/"
    answer, _ = attempt(container.get_blob_client(f"{last}report.").upload_blob, b"dotted")
    answers.record("trailing_dots", "put_last_segment_dot", answer)
    names = _listed(container, last)
    answers.record("trailing_dots", "listed_last_segment_dot", {"names": names})
    answer, download = attempt(container.get_blob_client(f"{last}report.").download_blob)
    got = download.readall() if download is not None else None
    body = got.decode() if got is not None else None
    answers.record("trailing_dots", "get_by_dotted_name", {**answer, "body": body})
    assert not refused(answers.data["scenarios"]["trailing_dots"]["put_last_segment_dot"])
    assert names in (["report."], ["report"])  # kept, or stored without the dot: one blob either way

    middle = f"{prefix}middle/"
    answer, _ = attempt(container.get_blob_client(f"{middle}dir./file").upload_blob, b"dotted folder")
    answers.record("trailing_dots", "put_middle_segment_dot", answer)
    names = _listed(container, middle)
    answers.record("trailing_dots", "listed_middle_segment_dot", {"names": names})
    assert len(names) == (0 if refused(answer) else 1)


def _metadata(total: int) -> dict[str, str]:
    """Eight entries whose names and values add up to ``total`` characters (ASCII)."""
    names = [f"m{n}" for n in range(8)]
    room = total - sum(map(len, names))
    values = [room // 8 + (1 if n < room % 8 else 0) for n in range(8)]
    return {name: "v" * size for name, size in zip(names, values, strict=True)}


def test_metadata_limits(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    cases = {
        "8_kib": _metadata(METADATA_LIMIT),
        "8_kib_plus_1": _metadata(METADATA_LIMIT + 1),
        "name_starting_with_digit": {"1abc": "x"},
        "name_with_hyphen": {"a-b": "x"},
    }
    assert sum(len(k) + len(v) for k, v in cases["8_kib"].items()) == METADATA_LIMIT
    for case, metadata in cases.items():
        blob = container.get_blob_client(f"{prefix}put-{case}")
        answer, _ = attempt(blob.upload_blob, b"data", metadata=metadata)
        answers.record("metadata", f"put_{case}", answer)

        blob = container.get_blob_client(f"{prefix}set-{case}")
        blob.upload_blob(b"data")
        answer, _ = attempt(blob.set_blob_metadata, metadata)
        answers.record("metadata", f"set_{case}", answer)
    # batchfiles lets metadata of up to 8 KiB with identifier names through: the service must take it.
    for step in ("put_8_kib", "set_8_kib"):
        assert not refused(answers.data["scenarios"]["metadata"][step])


def _ranged_get(blob: BlobClient, offset: int) -> Answer:
    answer, download = attempt(blob.download_blob, offset=offset)
    if download is not None:
        answer["body_length"] = len(download.readall())
    return answer


def test_ranged_get_at_and_past_the_end(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    blob = container.get_blob_client(f"{prefix}ten-bytes")
    blob.upload_blob(b"0123456789")
    empty = container.get_blob_client(f"{prefix}empty")
    empty.upload_blob(b"")
    steps = {
        "start_before_end": (blob, 9),
        "start_at_size": (blob, 10),
        "start_past_size": (blob, 15),
        "empty_blob_from_0": (empty, 0),
    }
    for step, (which, offset) in steps.items():
        answers.record("ranged_get", step, _ranged_get(which, offset))
    recorded = answers.data["scenarios"]["ranged_get"]
    assert recorded["start_before_end"]["body_length"] == 1
    # Following a log reads from its end: nothing there is a 416 or an empty answer, never an error else.
    for step in ("start_at_size", "start_past_size", "empty_blob_from_0"):
        assert recorded[step].get("status") in (200, 206, 416), recorded[step]
        assert recorded[step].get("body_length", 0) == 0


def test_append_block_size(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    blob = container.get_blob_client(f"{prefix}append")
    blob.create_append_blob()
    answer, _ = attempt(blob.append_block, bytes(4 * MiB))
    answers.record("append_block_size", "append_4_mib", answer)
    answer, _ = attempt(blob.append_block, bytes(4 * MiB + 1))
    answers.record("append_block_size", "append_4_mib_plus_1", answer)
    # Tracked saves append blocks of up to 4 MiB (batchfiles._tracking.limits.MAX_BLOCK).
    assert not refused(answers.data["scenarios"]["append_block_size"]["append_4_mib"])


def test_delete_with_d(container: ContainerClient, prefix: str, answers: Recorder) -> None:
    blob = container.get_blob_client(f"{prefix}delete-with-d")
    blob.upload_blob(b"x")
    answer, _ = attempt(blob.delete_blob)
    answers.record("delete_rights", "delete_with_d", answer)
    assert not refused(answer)
    assert not blob.exists()


def test_delete_without_d(
    container: ContainerClient, no_delete_container: ContainerClient, prefix: str, answers: Recorder
) -> None:
    blob = container.get_blob_client(f"{prefix}delete-without-d")
    blob.upload_blob(b"x")
    answer, _ = attempt(no_delete_container.get_blob_client(blob.blob_name).delete_blob)
    answers.record("delete_rights", "delete_without_d", answer)
    assert answer.get("status") == 403, answer
    assert blob.exists()
