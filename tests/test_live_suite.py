"""The live contract suite (tests/live/, ``make test-live``) is not dead code: run here with loopback URLs in
``BATCHFILES_LIVE_CONTAINER_URL``, container SAS URLs of Azurite directly and through a strict proxy. The
suite's other way in, a plain container URL signed in with the user's own ``DefaultAzureCredential``, is
not run here: no test builds that credential.

Each run must pass (the product scenarios hold everywhere) and write an answers file holding every scenario
step and no SAS signature; the suite must stay out of a plain ``pytest`` run even with the variable set,
and make no request and write nothing without it; ``compare.py`` names the steps that differ.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME, Azurite
from faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
LIVE = ROOT / "tests" / "live"
#: As ``make test-live`` runs it.
LIVE_PYTEST = ["-m", "pytest", "tests/live", "--confcutdir=tests/live", "-p", "no:cacheprovider"]
LIVE_PYTEST += ["--timeout=1800"]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"live_{name}", LIVE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


support = _load("live_support")
compare = _load("compare")


def _env(**live: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHFILES_LIVE")}
    return {**env, **live}


def _sas_url(endpoint: str, container: str, *, delete: bool) -> str:
    rights = ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=delete, list=True)
    expiry = datetime.now(timezone.utc) + timedelta(days=1)
    sas = generate_container_sas(
        ACCOUNT_NAME, container, account_key=ACCOUNT_KEY, permission=rights, expiry=expiry
    )
    return f"{endpoint}/{container}?{sas}"


@pytest.fixture
def live_container(service: BlobServiceClient) -> Iterator[str]:
    name = f"batchfiles-live-{uuid.uuid4().hex[:12]}"
    service.create_container(name)
    yield name
    service.delete_container(name)


@pytest.fixture(params=["azurite", "strict"])
def endpoint(request: pytest.FixtureRequest, azurite: Azurite) -> Iterator[str]:
    """Azurite's blob endpoint, directly or through a strict proxy (which answers as the service does)."""
    real = getattr(azurite, "upstream", azurite)  # the strict pass's azurite is a strict proxy: go behind it
    if request.param == "azurite":
        yield real.account_url
        return
    with FaultProxy(real.port, strict=real.connection_string, deadline_s=900) as proxy:
        yield proxy.url_for(ACCOUNT_NAME)


def _run_live(tmp_path: Path, *pytest_args: str, **env: str) -> tuple[dict[str, Any], str]:
    """Run the live suite as ``make test-live`` does, with ``env``; its answers file, read and checked for
    secrets (no SAS signature and no account key in it or in pytest's output), and that output."""
    answers = tmp_path / "answers.json"
    done = subprocess.run(
        [sys.executable, *LIVE_PYTEST, "-q", *pytest_args],
        cwd=ROOT,
        env=_env(BATCHFILES_LIVE_ANSWERS=str(answers), **env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " skipped" not in output, output[-3000:]
    text = answers.read_text(encoding="utf-8")
    secrets = [parse_qs(url.split("?", 1)[1])["sig"][0] for url in env.values() if "sig=" in url]
    for secret in (*secrets, ACCOUNT_KEY):
        assert secret not in text and secret not in output
    assert "sig=" not in text.lower()
    assert compare.differences(answers, answers) == []
    return json.loads(text), output


def _steps(recorded: dict[str, Any]) -> dict[str, list[str]]:
    return {name: sorted(steps) for name, steps in recorded["scenarios"].items()}


EVERY_STEP = {name: sorted(steps) for name, steps in support.SCENARIOS.items()}


@pytest.mark.slow
def test_live_suite_passes_and_records_every_scenario(
    endpoint: str, live_container: str, tmp_path: Path
) -> None:
    recorded, _ = _run_live(
        tmp_path,
        BATCHFILES_LIVE_CONTAINER_URL=_sas_url(endpoint, live_container, delete=True),
        BATCHFILES_LIVE_CONTAINER_URL_NO_DELETE=_sas_url(endpoint, live_container, delete=False),
    )
    assert recorded["service"] == f"{endpoint}/{live_container}"
    assert _steps(recorded) == EVERY_STEP
    rules = recorded["scenarios"]
    assert rules["blob_type"]["append_blob_over_block_blob"]["status"] in (201, 409)
    assert rules["ranged_get"]["start_before_end"]["headers"]["Content-Range"] == "bytes 9-9/10"


def test_live_suite_is_skipped_without_its_variable(tmp_path: Path) -> None:
    answers = tmp_path / "answers.json"
    done = subprocess.run(
        [sys.executable, *LIVE_PYTEST, "-q", "-rs"],
        cwd=ROOT,
        env=_env(BATCHFILES_LIVE_ANSWERS=str(answers)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BATCHFILES_LIVE_CONTAINER_URL is not set" in done.stdout
    assert " passed" not in done.stdout and " failed" not in done.stdout
    assert not answers.exists()


def test_plain_pytest_does_not_collect_the_live_suite() -> None:
    """``make test`` and CI run ``pytest`` (testpaths: tests): tests/live is reached and left out, even with
    the variable set (the top-level test files are left out here only to keep the check quick)."""
    url = "http://127.0.0.1:9/batchfiles-live?sv=x&sig=not-a-signature"
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*command, "--ignore-glob=tests/test_*.py", "--ignore=tests/installed"],
        cwd=ROOT,
        env=_env(BATCHFILES_LIVE_CONTAINER_URL=url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "tests/live" not in done.stdout
    assert "no tests collected" in done.stdout, done.stdout + done.stderr


def test_compare_names_the_steps_that_differ(tmp_path: Path) -> None:
    def answers(name: str, start_at_size: dict[str, object], **more: dict[str, object]) -> Path:
        path = tmp_path / name
        scenarios = {"ranged_get": {"start_at_size": start_at_size, **more}}
        path.write_text(json.dumps({"service": "x", "scenarios": scenarios}))
        return path

    refused = {"status": 416, "error_code": "InvalidRange", "headers": {"Content-Range": "bytes */10"}}
    live = answers("live.json", refused, empty_blob_from_0={"status": 416, "message": "one wording"})
    strict = answers(
        "strict.json",
        {"status": 206, "error_code": None, "headers": {}, "body_length": 0},
        empty_blob_from_0={"status": 416, "message": "another"},
        start_past_size=refused,
    )
    assert compare.differences(live, strict) == [
        "ranged_get/start_at_size: body_length None != 0; error_code 'InvalidRange' != None; "
        "headers.Content-Range 'bytes */10' != None; status 416 != 206",
        f"ranged_get/start_past_size: only in {strict}",
    ]
    done = subprocess.run(
        [sys.executable, str(LIVE / "compare.py"), str(live), str(live)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout) == (0, "no differences\n")
    done = subprocess.run(
        [sys.executable, str(LIVE / "compare.py"), str(live), str(strict)], capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout.count("\n") == 2
