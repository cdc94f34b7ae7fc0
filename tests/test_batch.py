"""The Batch service's OutputFiles (batchfiles.batch, `batchfiles output-files`): the REST JSON checked
against azure-batch 15.x's models, the names checked through a simulated node agent (tests/nodeagent.py)
that uploads to Azurite, and against save_many's names for random trees and patterns."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from batchfiles import (
    JobOutputKind,
    OutputFilesError,
    TaskOutputKind,
    _patterns,
    batch,
    naming,
    output_storage_container_url,
    prepare_output_storage,
)
from batchfiles.storage import JobOutputStorage, TaskOutputStorage
from helpers import cli
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nodeagent import NodeAgent

SAS_URL = "https://acct.blob.core.windows.net/job-x?sv=2024-01-01&sp=racwl&sig=TOPSECRETSIG%3D"
IDENTITY = (
    "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/writer"
)
#: The REST API reference's OutputFileUploadCondition values.
REST_CONDITIONS = {"taskSuccess", "taskFailure", "taskCompletion"}


def one(spec, task="t1", **kwargs):
    files = batch.output_files(kwargs.pop("url", SAS_URL), task, spec, **kwargs)
    assert len(files) == 1
    return files[0]


def pattern_and_path(spec, task="t1"):
    file = one(spec, task)
    return (
        file["filePattern"],
        file["destination"]["container"]["path"],
        file["uploadOptions"]["uploadCondition"],
    )


# --- the JSON ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, pattern, path, condition",
    [
        ("frames/*.png", "frames/*.png", "t1/$TaskOutput/frames", "taskCompletion"),
        ("out/**/*.txt=TaskPreview@success", "out/**/*.txt", "t1/$TaskPreview/out", "taskSuccess"),
        ("result.bin@failure", "result.bin", "t1/$TaskOutput/result.bin", "taskFailure"),
        ("a/b/c.txt", "a/b/c.txt", "t1/$TaskOutput/a/b/c.txt", "taskCompletion"),
        ("**/*.log=TaskLog", "**/*.log", "t1/$TaskLog", "taskCompletion"),
        # what the .NET sample's WithOutputFile gets wrong: only '*' taken for a wildcard, '..\' kept
        ("frame?.png", "frame?.png", "t1/$TaskOutput", "taskCompletion"),
        ("img/[ab].png", "img/[ab].png", "t1/$TaskOutput/img", "taskCompletion"),
        ("x/abc[*]", "x/abc[*]", "t1/$TaskOutput/x", "taskCompletion"),
        ("x/[]]*.txt", "x/[]]*.txt", "t1/$TaskOutput/x", "taskCompletion"),
        ("x/[!]]?", "x/[!]]?", "t1/$TaskOutput/x", "taskCompletion"),
        ("..\\std*.txt=TaskLog", "../std*.txt", "t1/$TaskLog", "taskCompletion"),
        ("../stdout.txt=TaskLog", "../stdout.txt", "t1/$TaskLog/stdout.txt", "taskCompletion"),
        # normalised: '.', empty segments and 'a/..' vanish; '\' separates
        ("./a//b/../c.txt", "a/c.txt", "t1/$TaskOutput/a/c.txt", "taskCompletion"),
        ("dir\\sub\\*.csv", "dir/sub/*.csv", "t1/$TaskOutput/dir/sub", "taskCompletion"),
        ("*/fixed/x.txt", "*/fixed/x.txt", "t1/$TaskOutput", "taskCompletion"),
        # a literal '@' or '=' in a name, as run --output takes them
        ("mail[@]x.txt", "mail[@]x.txt", "t1/$TaskOutput", "taskCompletion"),
        # job kinds: the job's outputs, no task prefix
        ("summary.csv=JobOutput@success", "summary.csv", "$JobOutput/summary.csv", "taskSuccess"),
        ("sheets/*.png=$JobPreview", "sheets/*.png", "$JobPreview/sheets", "taskCompletion"),
    ],
)
def test_pattern_path_and_condition(spec, pattern, path, condition):
    assert pattern_and_path(spec) == (pattern, path, condition)


def test_typed_specs_and_custom_kinds():
    spec = batch.OutputSpec("thumbs/*.jpg", TaskOutputKind.custom("Thumbs"), "success")
    assert pattern_and_path(spec, "t9") == ("thumbs/*.jpg", "t9/$Thumbs/thumbs", "taskSuccess")
    job_custom = batch.OutputSpec("a.txt", JobOutputKind.custom("Reports"))
    assert pattern_and_path(job_custom) == ("a.txt", "$Reports/a.txt", "taskCompletion")
    assert pattern_and_path(batch.OutputSpec("a.txt", "Reports")) == (
        "a.txt",
        "t1/$Reports/a.txt",
        "taskCompletion",
    )
    with pytest.raises(ValueError, match="unknown condition"):
        batch.OutputSpec("a.txt", condition="always")
    with pytest.raises(ValueError, match="case-sensitive"):
        batch.OutputSpec("a.txt", "tasklog")


def test_the_whole_shape_with_a_sas_identity_and_headers():
    files = batch.output_files(SAS_URL, "t1", ["a/*.txt", "a/*.txt", "b.bin@success"])
    assert files == [  # the repeated spec once
        {
            "filePattern": "a/*.txt",
            "destination": {"container": {"containerUrl": SAS_URL, "path": "t1/$TaskOutput/a"}},
            "uploadOptions": {"uploadCondition": "taskCompletion"},
        },
        {
            "filePattern": "b.bin",
            "destination": {"container": {"containerUrl": SAS_URL, "path": "t1/$TaskOutput/b.bin"}},
            "uploadOptions": {"uploadCondition": "taskSuccess"},
        },
    ]
    plain = "https://acct.blob.core.windows.net/job-x"
    headers = {"x-ms-blob-content-type": "text/plain"}
    file = one("b.txt", url=plain, identity_reference=IDENTITY, upload_headers=headers)
    assert file["destination"]["container"] == {
        "containerUrl": plain,
        "path": "t1/$TaskOutput/b.txt",
        "identityReference": {"resourceId": IDENTITY},
        "uploadHeaders": [{"name": "x-ms-blob-content-type", "value": "text/plain"}],
    }


def test_task_logs_and_upload_logs():
    files = batch.output_files(SAS_URL, "t1", [*batch.TASK_LOGS, *batch.UPLOAD_LOGS])
    got = [(f["filePattern"], f["destination"]["container"]["path"]) for f in files]
    assert got == [
        ("../stdout.txt", "t1/$TaskLog/stdout.txt"),
        ("../stderr.txt", "t1/$TaskLog/stderr.txt"),
        ("../fileupload*.txt", "t1/$TaskLog"),
    ]
    assert {f["uploadOptions"]["uploadCondition"] for f in files} == {"taskCompletion"}


@pytest.mark.parametrize(
    ("specs", "name"),
    [
        (["x", "../x"], "x"),
        (["*.txt=TaskLog", "../stdout.txt=TaskLog"], "stdout.txt"),
        (["*.txt=TaskLog", *batch.TASK_LOGS], "stdout.txt"),  # --task-logs with run's own logs
        (["**/*.log", "../*.log"], "a.log"),
        (["../*.log@success", "**/*.log"], "a.log"),
        (["std?ut.txt=TaskLog", "../std*.txt=TaskLog"], "stdout.txt"),
        (["**=TaskLog", *batch.UPLOAD_LOGS], "fileupload.txt"),
        (["out.txt=JobOutput", "../*.txt=JobOutput@failure"], "out.txt"),
    ],
)
def test_two_places_onto_the_same_blobs_are_refused(specs, name):
    """The working directory's file and the task directory's of the same name, under one kind: one would
    overwrite the other at upload. Decided by what the patterns can match, whatever their text."""
    with pytest.raises(OutputFilesError, match="would upload two files to one blob") as err:
        batch.output_files(SAS_URL, "t1", specs)
    assert f"the working directory's {name!r} and the task directory's ('../{name}')" in str(err.value)


@pytest.mark.parametrize(
    "specs",
    [
        ["*.txt=TaskLog", "../*.log=TaskLog"],  # no name both match
        ["*.txt", *batch.TASK_LOGS, *batch.UPLOAD_LOGS],  # other kinds
        ["sub/*.txt=TaskLog", "**/sub/*.txt=TaskLog", *batch.TASK_LOGS],  # only in a folder
        [".*=TaskLog", "../*.txt=TaskLog"],  # a dot-name is never '*'
        ["**=TaskLog", "../.x=TaskLog"],
        ["*.txt=TaskLog@success", "../stdout.txt=TaskLog@failure"],  # only one can run
        ["x=JobOutput", "../x"],  # the job's outputs, and the task's
    ],
)
def test_patterns_that_cannot_meet_on_one_blob_pass(specs):
    assert len(batch.output_files(SAS_URL, "t1", specs)) == len(specs)


def test_the_same_blobs_from_two_places_when_only_one_can_run():
    files = batch.output_files(SAS_URL, "t1", ["x@success", "../x@failure", "x@success", "*.txt=TaskLog"])
    assert [f["filePattern"] for f in files] == ["x", "../x", "*.txt"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("../../x", "climbs out of the task directory"),
        ("../wd/*.txt", "reaches into a folder of the task directory"),
        ("../wd/x.txt", "reaches into a folder of the task directory"),
        ("../**/*.txt", "reaches into a folder of the task directory"),
        ("../**", "reaches into a folder of the task directory"),
        ("a/../../out/*.png", "reaches into a folder of the task directory"),
        ("a/../../../x", "climbs out of the task directory"),
        ("/etc/*.conf", "is absolute"),
        ("\\\\server\\share\\x", "is absolute"),
        ("C:\\out\\*.txt", "is absolute"),
        ("$AZ_BATCH_NODE_SHARED_DIR/x", "environment variable"),
        ("out/${NAME}.txt", "environment variable"),
        ("%TEMP%\\x.txt", "environment variable"),
        ("..", "names no file"),
        ("a/..", "names no file"),
        ("x\x00y", "control character"),
        ("out/*\n.txt", "control character"),
        ("out/[abc.txt", "without its ']'"),
        ("a[!b/*.txt", "without its ']'"),
        ("out/[^a]*.txt", "write \\[!...\\]"),
        ("x=tasklog", "case-sensitive"),
        ("x@sometimes", "unknown condition"),
        ("=TaskLog", "no file pattern"),
        ("bad\x01name.txt", "control character"),
    ],
)
def test_what_cannot_be_named_by_the_conventions_is_refused(spec, message):
    with pytest.raises(OutputFilesError, match=message) as err:
        batch.output_files(SAS_URL, "t1", ["fine.txt", spec])
    assert isinstance(err.value, ValueError) and "TOPSECRETSIG" not in str(err.value)


@pytest.mark.parametrize(
    "url, identity, message",
    [
        ("https://acct.blob.core.windows.net/job-x", None, "has no SAS"),
        (SAS_URL, IDENTITY, "give one"),
        ("https://acct.blob.core.windows.net/job-x", "not-an-id", "managed identity's resource id"),
        ("https://acct.blob.core.windows.net/job-x", IDENTITY + "?sig=TOPSECRETSIG", "resource id"),
        ("https://acct.blob.core.windows.net/job-x", IDENTITY + " x", "managed identity's resource id"),
        ("http://acct.blob.core.windows.net/job-x", IDENTITY, "plain http"),
        ("http://example.com/acct/job-x?sv=1&sig=TOPSECRETSIG", None, "plain http"),
        ("https://acct.blob.core.windows.net/job-x/blob.txt?sig=TOPSECRETSIG", None, "not a container URL"),
        ("sv=1&sig=TOPSECRETSIG", None, "not a container URL"),
        ("https://acct.blob.core.windows.net/Job_X?sig=TOPSECRETSIG", None, "not a container URL"),
        (SAS_URL + "&se=2020-01-01T00:00:00Z", None, "expired at 2020-01-01"),
        (SAS_URL + "&se=notadate", None, "not one time"),
        (SAS_URL + "&se=2099-01-01T00:00:00Z&se=2098-01-01T00:00:00Z", None, "not one time"),
        ("https://me:TOPSECRETSIG@acct.blob.core.windows.net/job-x?sig=TOPSECRETSIG", None, "user name"),
        (SAS_URL.replace("sp=racwl", "sp=rl"), None, "grants no write"),
        (SAS_URL + "&sr=b", None, r"one blob's \(sr=b\)"),
        (SAS_URL + "&sr=bs", None, r"one blob's \(sr=bs\)"),
        (SAS_URL + "&ss=b&srt=sc", None, r"no access to blobs \(srt=sc"),
        (SAS_URL.replace(".net/", ".net:99999/"), None, "port out of range"),
        (SAS_URL.replace(".net/", ".net:0/"), None, "port out of range"),
        (SAS_URL.replace(".net/", ".net:https/"), None, "port out of range"),
        (SAS_URL + "&ss=q&srt=sco", None, r"no access to the blob service \(ss=q"),
        (SAS_URL + "&st=2199-01-01T00:00:00Z", None, "more than 1 hour ahead"),
        (SAS_URL + "&st=soon", None, r"starts at 'soon' \(st=\)"),
        (SAS_URL + "&st=2098-01-01T00:00:00Z&se=2097-01-01T00:00:00Z", None, "after its expiry"),
        (SAS_URL + "#fragment", None, "#fragment"),
        (SAS_URL.replace("?", "#x?"), None, "#fragment"),
    ],
)
def test_bad_container_urls_and_identities_never_show_the_sas(url, identity, message):
    with pytest.raises(OutputFilesError, match=message) as err:
        batch.output_files(url, "t1", "x.txt", identity_reference=identity)
    assert "TOPSECRETSIG" not in str(err.value)


@pytest.mark.parametrize(
    "scope", ["&sr=c", "&ss=b&srt=sco", "&ss=bfqt&srt=o", "&st=2020-01-01T00:00:00Z", "&st=2020-01-01"]
)
def test_container_and_account_sas_pass(scope):
    [spec] = batch.output_files(SAS_URL + scope, "t1", "x.txt")
    assert spec["destination"]["container"]["containerUrl"] == SAS_URL + scope
    ported = SAS_URL.replace(".net/", ".net:443/") + scope
    assert batch.output_files(ported, "t1", "x.txt")[0]["destination"]["container"]["containerUrl"] == ported


def test_bad_task_ids_headers_and_types():
    with pytest.raises(OutputFilesError, match="bad task id"):
        batch.output_files(SAS_URL, "a b", "x")
    with pytest.raises(OutputFilesError, match="no outputs"):
        batch.output_files(SAS_URL, "t1", [])
    with pytest.raises(TypeError):
        batch.output_files(SAS_URL, "t1", [3])
    with pytest.raises(OutputFilesError, match="upload header"):
        batch.output_files(SAS_URL, "t1", "x", upload_headers={"x-ms-meta-a": "1\r\nx: y"})
    with pytest.raises(OutputFilesError, match="upload header"):
        batch.output_files(SAS_URL, "t1", "x", upload_headers={"bad name": "1"})


def test_to_batch_models_without_azure_batch(monkeypatch):
    monkeypatch.setitem(sys.modules, "azure.batch.models", None)
    with pytest.raises(ImportError, match="azure-batch 15 or later"):
        batch.to_batch_models(batch.output_files(SAS_URL, "t1", "x"))


# --- against azure-batch 15.x -----------------------------------------------------------------------------

ALL_FIELDS = [
    *batch.TASK_LOGS,
    *batch.UPLOAD_LOGS,
    "frames/**/*.png=TaskPreview@success",
    "core.*=TaskLog@failure",
    "summary.csv=JobOutput",
]


@pytest.fixture
def models():
    azure_batch = pytest.importorskip("azure.batch")
    from azure.batch import _version

    assert _version.VERSION.startswith("15."), _version.VERSION
    return azure_batch.models


def rest_names(model_class) -> set[str]:
    """The JSON names of a model's fields (azure-batch maps them when a first instance is made)."""
    model_class({})
    return {field._rest_name for field in model_class._attr_to_rest_field.values()}


def test_every_field_and_condition_is_azure_batchs(models):
    files = batch.output_files(
        SAS_URL, "t1", ALL_FIELDS, upload_headers={"x-ms-blob-content-type": "text/plain"}
    )
    files += batch.output_files(SAS_URL.split("?")[0], "t1", "x", identity_reference=IDENTITY)
    for file in files:
        assert set(file) <= rest_names(models.OutputFile)
        assert set(file["destination"]) <= rest_names(models.OutputFileDestination)
        container = file["destination"]["container"]
        assert set(container) <= rest_names(models.OutputFileBlobContainerDestination)
        assert set(file["uploadOptions"]) <= rest_names(models.OutputFileUploadConfiguration)
        for header in container.get("uploadHeaders", []):
            assert set(header) == rest_names(models.OutputFileUploadHeader)
        if "identityReference" in container:
            assert set(container["identityReference"]) <= rest_names(models.BatchNodeIdentityReference)
    # REST API reference: taskSuccess...; azure-batch 15.x (API 2025-06-01) sends them in lower case.
    assert set(batch.UPLOAD_CONDITIONS.values()) == REST_CONDITIONS
    assert {c.lower() for c in REST_CONDITIONS} == {c.value for c in models.OutputFileUploadCondition}
    model = batch.to_batch_models(files)[-1]
    assert model.destination.container.identity_reference.resource_id == IDENTITY
    assert (
        models.OutputFileUploadCondition(model.upload_options.upload_condition.lower()).value
        == "taskcompletion"
    )


def test_task_creation_model_serialises_the_dicts_unchanged(models):
    from azure.batch._utils.model_base import SdkJSONEncoder

    files = batch.output_files(SAS_URL, "t1", ALL_FIELDS, upload_headers={"x-ms-meta-run": "7"})
    for output_files in (files, batch.to_batch_models(files)):
        task = models.BatchTaskCreateOptions(id="t1", command_line="./render.sh", output_files=output_files)
        assert task.as_dict()["outputFiles"] == files
        body = json.loads(json.dumps(task, cls=SdkJSONEncoder, exclude_readonly=True))  # create_task's body
        assert body["outputFiles"] == files
        paths = [f.destination.container.path for f in task.output_files]
        assert paths == [f["destination"]["container"]["path"] for f in files]


# --- the command line -------------------------------------------------------------------------------------


def test_cli_prints_the_json(bare_env):
    env = {**bare_env, "BATCHFILES_CONTAINER_URL": SAS_URL}
    result = cli("output-files", "--task-id", "t1", "--output", "frames/*.png", "--task-logs", env=env)
    assert result.returncode == 0, result.stderr
    expected = batch.output_files(SAS_URL, "t1", ["frames/*.png", *batch.TASK_LOGS, *batch.UPLOAD_LOGS])
    assert json.loads(result.stdout) == expected
    plain = "https://acct.blob.core.windows.net/job-x"
    args = ["--output", "a.txt=JobOutput", "--container-url", plain, "--identity-reference", IDENTITY]
    result = cli("output-files", "--task-id", "t1", *args, env=bare_env)
    assert json.loads(result.stdout) == batch.output_files(
        plain, "t1", "a.txt=JobOutput", identity_reference=IDENTITY
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output", "../../x"], "climbs out"),
        (["--output", "x=tasklog"], "case-sensitive"),
        ([], "nothing to upload"),
        (["--output", "*.txt=TaskLog", "--task-logs"], "with `batchfiles run` as the command leave"),
        (["--output", "**/*.log", "--output", "../*.log"], "would upload two files to one blob"),
        (["--output", "x", "--container-url", SAS_URL + "&ss=q&srt=o#f"], "#fragment"),
        (["--output", "x", "--identity-reference", IDENTITY], "give one"),
        (["--output", "x", "--container-url", "https://acct.blob.core.windows.net/job-x"], "has no SAS"),
        (["--output", "x", "--container-url", "http://example.com/a/job-x?sig=TOPSECRETSIG"], "plain http"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(bare_env, args, message):
    env = {**bare_env, "BATCHFILES_CONTAINER_URL": SAS_URL}
    result = cli("output-files", "--task-id", "t1", *args, env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert "TOPSECRETSIG" not in result.stderr and "Traceback" not in result.stderr


def test_cli_without_a_container_url(bare_env):
    result = cli("output-files", "--task-id", "t1", "--output", "x", env=bare_env)
    assert result.returncode == 2 and "BATCHFILES_CONTAINER_URL" in result.stderr


# --- a node agent on Azurite ------------------------------------------------------------------------------

TASK_SCRIPT = """\
import os, sys
files = ["frames/0001.png", "frames/night/0002.png", "frames/.preview.png", ".hidden/x.png",
         "thumbs/a.jpg", "thumbs/b.jpeg", "core.1234", "result.bin", "abc*", "abcd", "x[1].txt",
         "summary.csv", "deep/a/b/c.dat", "deep/a/.git/d.dat", "notes.md"]
for rel in files:
    os.makedirs(os.path.dirname(rel) or ".", exist_ok=True)
    with open(rel, "w") as f:
        f.write(rel + " of " + os.environ["TASK"])
print("rendered", len(files), "files")
print("warning: fake", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""

AGENT_OUTPUTS = [
    "frames/**/*.png",
    "thumbs/?.jp*g=TaskPreview",
    "core.*=TaskLog@failure",
    "result.bin@success",
    "abc[*]",
    "x[[]1].txt",
    "deep/**/*.dat=TaskIntermediate",
    "summary.csv=JobOutput@success",
    *batch.TASK_LOGS,
    *batch.UPLOAD_LOGS,
]

EXPECTED = {
    "TaskOutput": {"frames/0001.png", "frames/night/0002.png", "abc*", "x[1].txt"},
    "TaskPreview": {"thumbs/a.jpg", "thumbs/b.jpeg"},
    "TaskIntermediate": {"deep/a/b/c.dat"},
    "TaskLog": {"stdout.txt", "stderr.txt", "fileuploadout.txt", "fileuploaderr.txt"},
}


def test_a_node_agent_uploads_under_the_conventions(azurite, service, job_id, tmp_path):
    prepare_output_storage(service, job_id)
    url = output_storage_container_url(service, job_id)
    for task, code in (("task-ok", 0), ("task-failed", 3)):
        agent = NodeAgent(tmp_path / task)
        env = {**os.environ, "TASK": task}
        assert agent.run([sys.executable, "-c", TASK_SCRIPT, str(code)], env=env) == code
        uploaded = agent.upload(batch.output_files(url, task, AGENT_OUTPUTS), code)
        assert len(uploaded) == len(set(uploaded))

    expected_ok = {**EXPECTED, "TaskOutput": EXPECTED["TaskOutput"] | {"result.bin"}}
    expected_failed = {**EXPECTED, "TaskLog": EXPECTED["TaskLog"] | {"core.1234"}}
    with JobOutputStorage.from_connection_string(azurite.connection_string, job_id) as job:
        for task, expected in (("task-ok", expected_ok), ("task-failed", expected_failed)):
            storage = job.task(task)
            for kind, paths in expected.items():
                assert {ref.file_path for ref in storage.list(kind)} == paths, (task, kind)
            stdout = storage.get("TaskLog", "stdout.txt").download_bytes()
            assert stdout == b"rendered 15 files\n"
            # The agent's log, saved while it was written: its lines up to its own upload.
            log = storage.get("TaskLog", "fileuploadout.txt").download_bytes().decode()
            assert f"{task}/$TaskOutput/frames/0001.png" in log and "fileuploaderr.txt" in log
        assert {ref.file_path for ref in job.list("JobOutput")} == {"summary.csv"}  # task-ok's only

    # The command line finds every file under its task, kind and path, and fetches them.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AZ_BATCH_", "BATCHFILES_", "AZURE_"))},
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
    }
    listed = cli("list", job_id, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    records = {(r["task"], r["kind"], r["path"]) for r in map(json.loads, listed.stdout.splitlines())}
    want = {(None, "JobOutput", "summary.csv")}
    for task, expected in (("task-ok", expected_ok), ("task-failed", expected_failed)):
        want |= {(task, kind, path) for kind, paths in expected.items() for path in paths}
    assert records == want
    out = tmp_path / "got"
    fetched = cli("get", job_id, "--kind", "TaskOutput", "-o", str(out), env=env)
    assert fetched.returncode == 0, fetched.stderr
    for task, expected in (("task-ok", expected_ok), ("task-failed", expected_failed)):
        for path in expected["TaskOutput"]:
            assert (out / task / "TaskOutput" / path).read_text() == (
                tmp_path / task / "wd" / path
            ).read_text()


# --- the agent's names are save_many's ----------------------------------------------------------------------

NAME = st.text(alphabet="ab.c", min_size=1, max_size=3).filter(lambda s: s not in (".", ".."))
TREE = st.lists(st.lists(NAME, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12)
SEGMENT = st.one_of(
    NAME,
    st.sampled_from(["*", "?", "*.c", "a*", ".*", "[ab]*", "[!a]*", "[a-b]?", "**", "*[.]*", "?b"]),
)
PATTERN = st.lists(SEGMENT, min_size=1, max_size=3).map("/".join)
#: Names and patterns Azure stores as they are (no segment ending in '.'), for the upload comparison.
UNDOTTED = st.text(alphabet="ab.c", min_size=1, max_size=3).filter(lambda s: not s.endswith("."))
UNDOTTED_TREE = st.lists(st.lists(UNDOTTED, min_size=1, max_size=3).map("/".join), min_size=1, max_size=12)
UNDOTTED_PATTERN = st.lists(SEGMENT.filter(lambda s: not s.endswith(".")), min_size=1, max_size=3).map(
    "/".join
)
KIND = st.sampled_from(["TaskOutput", "TaskLog", "JobOutput"])


def make_tree(wd: Path, files: list[str]) -> None:
    for rel in files:
        path = wd / rel
        if any(parent.is_file() for parent in path.parents) or path.is_dir():
            continue  # a file where a folder should be, or the other way round
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def save_many_names(pattern: str, kind: str, wd: Path, task: str) -> set[str]:
    """The blobs save_many would write for ``pattern`` (its plan: the walk, then the names)."""
    task_id = None if kind == "JobOutput" else task
    return {naming.blob_name(kind, rel, task_id) for _, rel in _patterns.expand(pattern, wd)}


def agent_names(agent: NodeAgent, file: dict) -> set[str]:
    path = file["destination"]["container"]["path"]
    return {path if rel is None else f"{path}/{rel}" for _, rel in agent.select(file["filePattern"])}


PROPERTY = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY
@given(files=TREE, pattern=PATTERN, kind=KIND, data=st.data())
def test_the_agent_names_what_save_many_names(tmp_path_factory, files, pattern, kind, data):
    root = tmp_path_factory.mktemp("task")
    agent = NodeAgent(root)
    make_tree(agent.wd, files)
    if data.draw(st.booleans(), "from a file"):  # a pattern made from a file's path matches more often
        pattern = "/".join(
            data.draw(st.sampled_from([seg, "*", "?" * len(seg), "**/" + seg, f"[{seg[0]}]*"]))
            for seg in data.draw(st.sampled_from(files)).split("/")
        )
    if any(part.endswith(".") for part in pattern.split("/") if part not in (".", "..")):
        with pytest.raises(OutputFilesError, match=r"ending in '\.'"):  # Azure would drop the dots
            batch.output_files(SAS_URL, "t1", f"{pattern}={kind}")
        return
    (file,) = batch.output_files(SAS_URL, "t1", f"{pattern}={kind}")
    names = agent_names(agent, file)
    event("some files match" if names else "no file matches")
    if any(part.endswith(".") for name in names for part in name.split("/")):
        # The agent uploads what a wildcard matches, as it is named; save_many refuses such a file.
        with pytest.raises(ValueError, match=r"ending in '\.'"):
            save_many_names(pattern, kind, agent.wd, "t1")
        event("a match ends in '.'")
        return
    assert names == save_many_names(pattern, kind, agent.wd, "t1")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=UNDOTTED_TREE, patterns=st.lists(UNDOTTED_PATTERN, min_size=1, max_size=3))
def test_the_agent_uploads_what_save_many_would(azurite, service, tmp_path_factory, files, patterns):
    job_id = f"agent-{os.urandom(4).hex()}"
    prepare_output_storage(service, job_id)
    url = output_storage_container_url(service, job_id)
    agent = NodeAgent(tmp_path_factory.mktemp("task"))
    make_tree(agent.wd, files)
    uploaded = agent.upload(batch.output_files(url, "t1", patterns), 0)
    expected = set().union(*(save_many_names(p, "TaskOutput", agent.wd, "t1") for p in patterns))
    assert set(uploaded) == expected
    with TaskOutputStorage.from_connection_string(azurite.connection_string, job_id, "t1") as storage:
        assert {ref.blob_name for ref in storage.list("TaskOutput")} == expected
        for ref in storage.list("TaskOutput"):
            assert ref.download_bytes().decode() == ref.file_path


def test_simulated_agent_rules():
    # The simulation itself, on the documented examples: '.' names, brackets, escapes.
    from nodeagent import _pattern_regex

    def matches(pattern: str, rel: str) -> bool:
        import re

        return re.fullmatch(_pattern_regex(pattern.split("/")), rel) is not None

    assert matches("*.gif", "a.gif") and not matches("*.gif", ".a.gif") and matches(".*.gif", ".a.gif")
    assert matches("abc*", "abc") and matches("abc*", "abcdef")
    assert (
        matches("**/*.txt", "x.txt")
        and matches("**/*.txt", "a/b/x.txt")
        and not matches("**/*.txt", ".a/x.txt")
    )
    assert matches("[abc]", "b") and not matches("[abc]", "d") and matches("[a-c]", "b")
    assert matches("[!abc]", "d") and not matches("[!abc]", "a") and matches("?", "z")
    assert matches("abc[*]", "abc*") and not matches("abc[*]", "abcd")


def test_a_sas_expiring_soon_is_warned_of(caplog):
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with caplog.at_level("WARNING", logger="batchfiles"):
        batch.output_files(f"{SAS_URL}&se={soon}", "t1", "x")
    assert "the node agent's uploads" in caplog.text and "TOPSECRETSIG" not in caplog.text


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.sampled_from("ab./\\*?[]!-=@$%:\x01 é"), max_size=16))
def test_any_spec_gives_conventions_json_or_a_clear_error(text):
    try:
        (file,) = batch.output_files(SAS_URL, "t1", text)
    except OutputFilesError as err:
        assert "TOPSECRETSIG" not in str(err) and "\n" not in str(err)
        return
    pattern, path = file["filePattern"], file["destination"]["container"]["path"]
    segments = pattern.split("/")
    assert "\\" not in pattern and "" not in segments and "." not in segments
    assert ".." not in segments[1:]
    assert path.startswith(("t1/$", "$")) and ".." not in path.split("/")
    assert json.loads(json.dumps(file)) == file


# --- two patterns, one blob: what they can match, not their text -----------------------------------------

NAME_SEGMENT = st.one_of(
    st.text(alphabet="ab.c", min_size=1, max_size=3),
    st.lists(
        st.sampled_from(["a", "b", ".", "c", "*", "?", "[ab]", "[!a]", "[a-b]", "[.]", "[*]"]),
        min_size=1,
        max_size=4,
    ).map("".join),
)


def brute_force_common_name(first: str, second: str) -> str | None:
    """A name over a small alphabet, up to 6 characters, that both name patterns match as the node agent
    matches them (the simulation's regex, dot rule included)."""
    import itertools
    import re

    from nodeagent import _segment_regex

    a, b = re.compile(_segment_regex(first)), re.compile(_segment_regex(second))
    for size in range(1, 7):
        for chars in itertools.product("ab.cZ*", repeat=size):
            name = "".join(chars)
            if a.fullmatch(name) and b.fullmatch(name):
                return name
    return None


@settings(max_examples=400, deadline=None)
@given(first=NAME_SEGMENT, second=NAME_SEGMENT)
def test_common_name_is_a_name_both_match_when_there_is_one(first, second):
    """Exact on both sides, against the simulated node agent's matching: the name found matches both; none
    found means none exists (checked for all names of up to 6 characters from an alphabet covering both)."""
    import re

    from nodeagent import _segment_regex

    name = _patterns.common_name(first, second)
    if name is None:
        assert brute_force_common_name(first, second) is None
        return
    event("a common name")
    assert re.fullmatch(_segment_regex(first), name) and re.fullmatch(_segment_regex(second), name)


WD_PATTERN = st.lists(
    st.one_of(UNDOTTED, st.sampled_from(["*", "?", "*.c", "a*", ".*", "[ab]*", "[!a]*", "**", "?b"])),
    min_size=1,
    max_size=3,
).map("/".join)
TASK_DIR_PATTERN = st.one_of(
    UNDOTTED, st.sampled_from(["*", "?", "*.c", "a*", ".*", "[ab]*", "?b", "a?"])
).map(lambda name: "../" + name)
SPEC_KIND = st.sampled_from(["=TaskOutput", "=TaskLog", "=JobOutput"])
#: The names of one or two characters of NAME's alphabet ('.' and '..' left out).
SHORT_NAMES = [a + b for a in "ab.c" for b in ["", *"ab.c"] if a + b not in (".", "..")]
SPEC_CONDITION = st.sampled_from(["@success", "@failure", "@completion"])


def agent_uploads(agent: NodeAgent, files: list[dict], exit_code: int) -> dict[str, set[Path]]:
    """Blob name -> the files the simulated agent would upload to it, for ``exit_code``."""
    out: dict[str, set[Path]] = {}
    for file in files:
        condition = file["uploadOptions"]["uploadCondition"].lower()
        if condition == ("taskfailure" if exit_code == 0 else "tasksuccess"):
            continue
        path = file["destination"]["container"]["path"]
        for local, rel in agent.select(file["filePattern"]):
            blob = path if rel is None else f"{path}/{rel}"
            out.setdefault(blob, set()).add(local.resolve())
    return out


@PROPERTY
@given(
    wd_files=TREE,
    task_files=st.lists(UNDOTTED, max_size=6),
    wd=st.tuples(WD_PATTERN, SPEC_KIND, SPEC_CONDITION),
    task=st.tuples(TASK_DIR_PATTERN, SPEC_KIND, SPEC_CONDITION),
    same_kind=st.booleans(),
    swap=st.booleans(),
)
def test_two_patterns_never_put_two_files_on_one_blob(
    tmp_path_factory, wd_files, task_files, wd, task, same_kind, swap
):
    """A working-directory pattern and a task-directory one: output_files refuses them exactly when some
    tree makes the simulated agent upload two files to one blob. Refused: the name in the message, put in
    both folders, does; accepted: this random tree does not."""
    import re

    agent = NodeAgent(tmp_path_factory.mktemp("task"))
    if same_kind:
        task = (task[0], wd[1], task[2])
    specs = ["".join(task), "".join(wd)] if swap else ["".join(wd), "".join(task)]
    try:
        files = batch.output_files(SAS_URL, "t1", specs)
    except OutputFilesError as err:
        found = re.search(r"the working directory's '([^']+)' and", str(err))
        if not found:
            event("refused for another reason")  # a segment ending in '.', say
            return
        event("refused: two files, one blob")
        name = found.group(1)
        (agent.wd / name).write_text("the working directory's")
        (agent.task_dir / name).write_text("the task directory's")
        files = [batch.output_files(SAS_URL, "t1", spec)[0] for spec in specs]
        shared = [
            blob
            for code in (0, 1)
            for blob, sources in agent_uploads(agent, files, code).items()
            if len(sources) > 1
        ]
        assert shared, (specs, name)
        return
    # Every short name, and the drawn ones, in both folders: a name both patterns match is there to collide.
    in_both = [*SHORT_NAMES, *task_files]
    make_tree(agent.wd, [*in_both, *wd_files])
    for name in in_both:
        (agent.task_dir / name).write_text(name)
    for code in (0, 1):
        for blob, sources in agent_uploads(agent, files, code).items():
            assert len(sources) == 1, (specs, blob, sources)
    event("accepted")
