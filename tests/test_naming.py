"""Naming: golden vectors of the .NET library and Batch Explorer, properties, the pure-Python reference."""

from __future__ import annotations

import json
import re
import string
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import reference_naming as ref
from batchfiles import JobOutputKind, TaskOutputKind, _native, _scope, naming
from batchfiles._native import test_support
from hypothesis import given, settings
from hypothesis import strategies as st

VECTORS = json.loads((Path(__file__).with_name("vectors.json")).read_text())

job_ids = st.text(alphabet=string.ascii_letters + string.digits + "-_:", min_size=1, max_size=128)
task_ids = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=64)
path_segments = st.sampled_from(
    ["..", ".", "", "a", "B", "frame 1.png", "x..y", "ü", "$k", "...", "C:", "a:b"]
)
paths = st.lists(path_segments, max_size=12).flatmap(
    lambda segs: st.sampled_from(["/", "\\"]).map(lambda sep: sep.join(segs))
)


@pytest.mark.parametrize("case", VECTORS["container_names"], ids=lambda c: c["job_id"])
def test_container_name_vectors(case):
    assert naming.container_name(case["job_id"]) == case["container"]


def test_container_names_bulk_equals_single():
    ids = [c["job_id"] for c in VECTORS["container_names"]]
    assert naming.container_names(ids) == [c["container"] for c in VECTORS["container_names"]]
    assert naming.container_names(tuple(ids)) == naming.container_names(ids)
    assert naming.container_names([]) == []


@pytest.mark.parametrize("case", VECTORS["storage_paths"], ids=lambda c: f"{c['task_id']}-{c['kind']}")
def test_blob_prefix_vectors(case):
    assert naming.blob_prefix(case["kind"], case["task_id"]) == case["prefix"]


@pytest.mark.parametrize("case", VECTORS["file_paths_from_blob_urls"], ids=lambda c: c["file_path"])
def test_file_path_vectors(case):
    blob = urlsplit(case["url"]).path.lstrip("/").split("/", 1)[1]  # drop the container
    assert naming.file_path(blob) == case["file_path"]


@pytest.mark.parametrize("case", VECTORS["relative_source_paths"], ids=lambda c: c["path"])
def test_destination_path_vectors(case):
    if "error" in case:
        with pytest.raises(ValueError, match=case["error"]):
            naming.destination_path(case["path"])
    else:
        assert naming.destination_path(case["path"]) == case["destination"]


def test_kinds():
    assert [
        str(k)
        for k in (
            TaskOutputKind.TASK_OUTPUT,
            TaskOutputKind.TASK_PREVIEW,
            TaskOutputKind.TASK_LOG,
            TaskOutputKind.TASK_INTERMEDIATE,
        )
    ] == VECTORS["kinds"]["task"]
    assert [str(k) for k in (JobOutputKind.JOB_OUTPUT, JobOutputKind.JOB_PREVIEW)] == VECTORS["kinds"]["job"]
    assert TaskOutputKind.custom("alice") != TaskOutputKind.custom("Alice")
    assert TaskOutputKind.custom("TaskOutput") == TaskOutputKind.TASK_OUTPUT
    assert TaskOutputKind.custom("x") != JobOutputKind.custom("x")
    assert len({TaskOutputKind.TASK_LOG, TaskOutputKind("TaskLog"), TaskOutputKind("tasklog")}) == 2
    assert repr(JobOutputKind.JOB_OUTPUT) == "JobOutputKind('JobOutput')"
    with pytest.raises(AttributeError):
        TaskOutputKind.TASK_LOG._text = "x"


@pytest.mark.parametrize("text", ["", ".", "..", "$x", "a/b", "a\\b", "a\nb", "\x00"])
def test_bad_custom_kinds(text):
    with pytest.raises(ValueError, match="output kind"):
        TaskOutputKind.custom(text)


def test_kind_objects_and_text_are_interchangeable():
    assert naming.blob_name(TaskOutputKind.TASK_LOG, "a.txt", "t") == naming.blob_name(
        "TaskLog", "a.txt", "t"
    )
    assert naming.blob_prefix(JobOutputKind.custom("Movies")) == "$Movies"
    with pytest.raises(TypeError):
        naming.blob_prefix(42)


@pytest.mark.parametrize(
    ("job_id", "bad"),
    [("a b", "U+0020"), ("a/b", "'/'"), ("é", "'é'"), ("x.y", "'.'"), ("", "empty"), ("a" * 129, "129")],
)
def test_bad_job_ids_name_the_problem(job_id, bad):
    with pytest.raises(ValueError) as info:
        naming.container_name(job_id)
    assert bad in str(info.value)


def test_bulk_errors_name_the_index():
    with pytest.raises(ValueError, match=r"job_ids\[2\]"):
        naming.container_names(["a", "b", "c d"])
    with pytest.raises(ValueError, match=r"paths\[1\]"):
        naming.blob_names("TaskOutput", ["a", "/etc/passwd"], "t")


def test_large_bulk_calls_derive_in_two_threads_and_keep_order_and_the_first_error():
    """From 16,384 inputs on, two threads derive slices of 2,048: the names stay in order, and an error
    is the first bad input's, wherever the threads are."""
    ids = [f"Job_{i}" if i % 3 else f"job-{i}" for i in range(50_000)]
    assert naming.container_names(ids) == [naming.container_name(i) for i in ids]
    paths = [f"out/{i}.txt" for i in range(20_000)]
    assert naming.blob_names("TaskOutput", paths, "t") == [
        f"t/$TaskOutput/out/{i}.txt" for i in range(20_000)
    ]
    for bad in ([49_999], [2_047, 45_000], [30_000, 30_001, 2_049 * 20]):
        broken = list(ids)
        for index in bad:
            broken[index] = "bad id"
        with pytest.raises(ValueError, match=rf"job_ids\[{bad[0]}\]"):
            naming.container_names(broken)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 39_999), max_size=3),
    st.sampled_from([lambda i: f"Job_{i}", lambda i: f"job-{i}", lambda i: f"sched:{i}:x" * 3]),
)
def test_either_thread_may_derive_any_slice_and_the_result_is_the_same(bad, shape):
    """The caller's thread derives a slice itself rather than wait for the helper: whichever thread
    derives which slice, the names are in order and an error is the first bad input's."""
    ids = [shape(i) for i in range(40_000)]
    for index in bad:
        ids[index] = "bad id"
    if bad:
        with pytest.raises(ValueError, match=rf"job_ids\[{min(bad)}\]"):
            naming.container_names(ids)
    else:
        assert naming.container_names(ids) == [naming.container_name(i) for i in ids]


@pytest.mark.parametrize("claimed", [3, 5, 20_000, 40_000])
def test_bulk_inputs_whose_length_lies_are_refused(claimed):
    """Items are taken slice by slice: a sequence that yields more or fewer items than its length says
    (a list changed by another thread meanwhile) is a RuntimeError, never a short or padded result."""

    class Liar(list):
        def __len__(self):
            return claimed

    for actual in (4, 30_000):
        if actual != claimed:
            with pytest.raises(RuntimeError, match="job_ids changed size while it was read"):
                naming.container_names(Liar(f"j{i}" for i in range(actual)))


def test_bulk_takes_any_iterable_of_str():
    ids = [f"Job{i}" for i in range(20_000)]
    expected = naming.container_names(ids)
    assert naming.container_names(iter(ids)) == expected
    assert naming.container_names(tuple(ids)) == expected
    assert naming.container_names(j for j in ids) == expected
    with pytest.raises(TypeError, match=r"job_ids\[19999\] must be a str, not int"):
        naming.container_names([*ids[:-1], 5])


@pytest.mark.parametrize("bad", [3, None, b"job", ["a"]])
def test_wrong_types_are_type_errors(bad):
    with pytest.raises(TypeError):
        naming.container_name(bad)
    with pytest.raises(TypeError):
        naming.destination_path(bad)


def test_bulk_rejects_a_plain_string():
    with pytest.raises(TypeError):
        naming.container_names("abc")


@pytest.mark.parametrize("path", ["/x", "\\x", "a\x00b", "", "..", "a/..", "./."])
def test_bad_destinations(path):
    with pytest.raises(ValueError, match="path"):
        naming.destination_path(path)


@pytest.mark.parametrize(
    ("path", "elsewhere"), [("C:\\x", "C:/x"), ("C:/x", "C:/x"), ("c:x", "c:x"), ("a:b", "a:b")]
)
def test_a_drive_prefix_is_absolute_only_on_windows(path, elsewhere):
    """``a:b`` is a valid Linux file name: only Windows reads ``X:`` as a drive."""
    if sys.platform == "win32":
        with pytest.raises(ValueError, match="absolute"):
            naming.destination_path(path)
    else:
        assert naming.destination_path(path) == elsewhere
        assert naming.blob_name("TaskOutput", path, "t") == f"t/$TaskOutput/{elsewhere}"
        assert ref.destination_path(path) == elsewhere


def test_blob_name_limits():
    with pytest.raises(ValueError, match="1024"):
        naming.blob_name("JobOutput", "a" * 1020)
    with pytest.raises(ValueError, match="254"):
        naming.blob_name("JobOutput", "/".join(["a"] * 254))
    assert naming.blob_name("JobOutput", "/".join(["a"] * 253)).count("/") == 253


def test_task_id_case_is_kept():
    assert naming.blob_name("TaskOutput", "f.png", "Task_A-1") == "Task_A-1/$TaskOutput/f.png"
    with pytest.raises(ValueError, match="task id"):
        naming.blob_name("TaskOutput", "f.png", "job:1")


# --- properties -------------------------------------------------------------------------------------------

CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")


@given(job_ids)
def test_container_name_properties(job_id):
    name = naming.container_name(job_id)
    assert CONTAINER.match(name), name  # starts with a letter or digit; a-z, 0-9, '-'; no '--', no edge '-'
    assert 3 <= len(name) <= 63
    lower = job_id.lower()
    if len(lower) <= 59 and CONTAINER.match(lower):
        assert name == "job-" + lower
    assert name == ref.container_name(job_id)


@given(st.lists(job_ids, max_size=20))
def test_container_names_bulk_property(ids):
    assert naming.container_names(ids) == [ref.container_name(i) for i in ids]


@given(st.text(max_size=140))
def test_arbitrary_job_ids_are_named_or_rejected_like_the_reference(text):
    try:
        expected = ref.container_name(text)
    except ValueError:
        with pytest.raises(ValueError):
            naming.container_name(text)
    else:
        assert naming.container_name(text) == expected


@given(st.one_of(job_ids, st.text(max_size=140)))
def test_job_id_check_refuses_exactly_what_naming_refuses(text):
    try:
        naming.container_name(text)
    except ValueError as err:
        with pytest.raises(ValueError) as info:
            test_support.validate_job_id(text)
        assert str(info.value) == str(err)
    else:
        assert test_support.validate_job_id(text) is None


@given(paths)
def test_destination_path_matches_reference_and_is_idempotent(path):
    try:
        expected = ref.destination_path(path)
    except ValueError:
        with pytest.raises(ValueError):
            naming.destination_path(path)
        return
    dest = naming.destination_path(path)
    assert dest == expected
    assert naming.destination_path(dest) == dest
    assert ".." not in dest.split("/")
    assert "\\" not in dest


@given(st.text(max_size=60))
def test_destination_path_never_climbs_on_any_text(path):
    try:
        dest = naming.destination_path(path)
    except ValueError:
        return
    assert dest and not dest.startswith("/")
    assert all(seg not in ("", ".", "..") for seg in dest.split("/"))
    assert naming.destination_path(dest) == dest


@given(st.sampled_from(["TaskOutput", "TaskLog", "Custom"]), paths, st.one_of(st.none(), task_ids))
def test_blob_name_matches_reference_and_round_trips(kind, path, task_id):
    try:
        expected = ref.blob_name(kind, path, task_id)
    except ValueError:
        with pytest.raises(ValueError):
            naming.blob_name(kind, path, task_id)
        return
    name = naming.blob_name(kind, path, task_id)
    assert name == expected
    assert naming.file_path(name) == naming.destination_path(path)
    assert name.startswith(naming.blob_prefix(kind, task_id) + "/")
    assert naming.blob_names(kind, [path, path], task_id) == [name, name]


@given(st.text(max_size=80))
def test_file_path_never_fails_oddly(text):
    try:
        result = naming.file_path(text)
    except ValueError:
        return
    assert text.endswith(result) and result


# --- reading names back: output blob names parsed by the core, against the reference ---------------------

name_segments = st.sampled_from(
    [
        *["", ".", "..", "a", "x.txt", "t1", "T1", "$TaskOutput", "$JobOutput", "$", "$$x", "$.", "$a\\b"],
        *["\\", "c:", " ", "\t", "\x85", "ü", "%2E"],
    ]
)
blob_names = st.one_of(st.lists(name_segments, max_size=6).map("/".join), st.text(max_size=24))
scope_tasks = st.sampled_from([None, "t1", "T1", "t/1"])


def native_parse(blob_name: str, task_id: str | None) -> tuple[str, str] | str:
    try:
        return _native.parse_output_name(blob_name, task_id)
    except ValueError as err:
        return str(err)


@settings(max_examples=400)
@given(blob_names, scope_tasks)
def test_parse_output_name_matches_the_reference(blob_name, task_id):
    got = native_parse(blob_name, task_id)
    try:
        expected = ref.parse_output_name(blob_name, task_id)
    except ValueError as err:
        assert isinstance(got, str), got
        reason = str(err)  # the reference words a bad kind only as "output kind"
        assert got == reason or (reason == "output kind" and got.startswith("output kind ")), (got, reason)
        with pytest.raises(_scope.NotAnOutput) as info:
            _scope.Scope("c", task_id).parse(blob_name)
        assert str(info.value) == got
        return
    assert got == expected
    kind, path = _scope.Scope("c", task_id).parse(blob_name)
    assert (type(kind), str(kind), path) == (
        JobOutputKind if task_id is None else TaskOutputKind,
        expected[0],
        expected[1],
    )
    assert naming.destination_path(path) == path


@settings(max_examples=400)
@given(st.one_of(st.lists(name_segments, max_size=6).map("/".join), st.text(max_size=24)))
def test_path_problem_matches_the_reference(path):
    assert _native.path_problem(path) == _scope.path_problem(path) == ref.path_problem(path)


@given(st.sampled_from(["TaskOutput", "TaskLog", "Custom"]), paths, st.one_of(st.none(), task_ids))
def test_derived_names_parse_back(kind, path, task_id):
    try:
        name = naming.blob_name(kind, path, task_id)
    except ValueError:
        return
    assert _native.parse_output_name(name, task_id) == (kind, naming.destination_path(path))


@pytest.mark.parametrize(
    ("blob_name", "task_id", "reason"),
    [
        ("t2/$TaskOutput/x", "t1", "it is not under t1/"),
        ("$TaskOutput/x", "t1", "it is not under t1/"),
        ("t1/TaskOutput/x", "t1", "it has no $Kind segment"),
        ("t1/$TaskOutput/x", None, "it has no $Kind segment"),
        ("t1/$/x", "t1", "output kind must not be empty"),
        ("t1/$$x/y", "t1", "output kind \"$x\" must not start with '$' (it is added by the conventions)"),
        ("t1/$TaskOutput", "t1", "it has no file path after its kind"),
        ("$JobOutput/", None, "it has no file path after its kind"),
        ("t1/$TaskOutput/a\tb", "t1", "its file path has a control character"),
        ("t1/$TaskOutput/a\\b", "t1", "its file path has a '\\'"),
        ("t1/$TaskOutput//lead", "t1", "its file path is absolute"),
        ("$JobOutput/q/../b", None, "its file path has a '..' segment"),
        ("$JobOutput/q/./b", None, "its file path has a '.' segment"),
        ("$JobOutput/q//b", None, "its file path has an empty segment"),
    ],
)
def test_parse_refusals_say_why(blob_name, task_id, reason):
    with pytest.raises(_scope.NotAnOutput) as info:
        _scope.Scope("c", task_id).parse(blob_name)
    assert str(info.value) == reason


def test_a_drive_prefix_in_a_listed_name_is_absolute_only_on_windows():
    reason = "its file path is absolute" if sys.platform == "win32" else "its file path has a '..' segment"
    assert native_parse("$JobOutput/c:/../x", None) == reason
    assert native_parse("$JobOutput/c:/x", None) == (
        "its file path is absolute" if sys.platform == "win32" else ("JobOutput", "c:/x")
    )


@pytest.mark.parametrize("path", ["report.", "frames./1.png", "a/...", "x.\\y"])
def test_a_segment_ending_in_a_dot_is_refused_everywhere_a_name_is_made(path):
    # Azure stores "report." as "report" (over a file of that name): refused, naming the path and why.
    for make in (naming.destination_path, lambda p: naming.blob_name("TaskOutput", p, "t1")):
        with pytest.raises(ValueError, match=r"ending in '\.'.*Azure Blob storage drops"):
            make(path)
    with pytest.raises(ValueError, match=r"ending in '\.'"):
        naming.blob_names("TaskOutput", ["ok.txt", path])
    with pytest.raises(ValueError, match=r"ends in '\.'"):
        naming.blob_prefix("Custom.")  # a custom kind too
