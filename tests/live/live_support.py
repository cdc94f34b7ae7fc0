"""What the live contract tests share: the variables they read, the scenarios they record, and the recording.

An *answer* is what one request got back, as plain JSON: ``status``, ``error_code`` (``x-ms-error-code``),
``headers`` (those of :data:`HEADERS` the service sent) and whatever else a step notes (``body_length``,
``names``, ``after``). A request the service answered by closing the connection is recorded as ``exception``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline import PipelineResponse
from azure.storage.blob import ContainerClient

#: A container URL with a SAS (racwdl), or without one (with the account key of ENV_ACCOUNT_KEY).
ENV_URL = "BATCHFILES_LIVE_CONTAINER_URL"
#: With a container URL without SAS: the account's key, to sign the suite's own SAS (racwdl and racwl).
ENV_ACCOUNT_KEY = "BATCHFILES_LIVE_ACCOUNT_KEY"
#: Optional, with a SAS URL: the same container with a SAS lacking the delete right.
ENV_NO_DELETE = "BATCHFILES_LIVE_CONTAINER_URL_NO_DELETE"
#: Where the answers are written (default: ``live-answers.json`` in the current directory).
ENV_ANSWERS = "BATCHFILES_LIVE_ANSWERS"
DEFAULT_ANSWERS = "live-answers.json"

#: Every scenario and its steps, in the order the tests record them. The recorder refuses any other.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "blob_type": (
        "append_blob_over_block_blob",
        "block_blob_over_append_blob",
        "stage_block_on_append_blob",
        "commit_block_list_over_append_blob",
        "append_block_on_block_blob",
    ),
    "trailing_dots": (
        "put_last_segment_dot",
        "listed_last_segment_dot",
        "get_by_dotted_name",
        "put_middle_segment_dot",
        "listed_middle_segment_dot",
    ),
    "metadata": (
        "put_8_kib",
        "put_8_kib_plus_1",
        "put_name_starting_with_digit",
        "put_name_with_hyphen",
        "set_8_kib",
        "set_8_kib_plus_1",
        "set_name_starting_with_digit",
        "set_name_with_hyphen",
    ),
    "ranged_get": ("start_before_end", "start_at_size", "start_past_size", "empty_blob_from_0"),
    "append_block_size": ("append_4_mib", "append_4_mib_plus_1"),
    "delete_rights": ("delete_with_d", "delete_without_d"),
    "run_over_block_blob_log": ("run_full_sas", "run_sas_without_d"),
    "save_bytes_over_64_mib": ("save_bytes",),
    "save_many_trailing_dot_collision": ("save_many",),
}

#: The response headers recorded, when present.
HEADERS = ("Content-Range", "Retry-After", "x-ms-blob-type")

Answer = dict[str, Any]
_SIG = re.compile(r"(sig=)[^&\s\"']*", re.IGNORECASE)
_KEY = re.compile(r"(AccountKey=)[^;\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every SAS signature and account key replaced by ``REDACTED``."""
    text = _KEY.sub(r"\1REDACTED", _SIG.sub(r"\1REDACTED", text))
    key = os.environ.get(ENV_ACCOUNT_KEY)
    return text.replace(key, "REDACTED") if key else text


def public_url(url: str) -> str:
    """``url`` without its query (where a SAS is)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def answer_of(response: Any) -> Answer:
    """The answer of an azure-core ``HttpResponse``."""
    headers = response.headers
    return {
        "status": response.status_code,
        "error_code": headers.get("x-ms-error-code"),
        "headers": {name: headers[name] for name in HEADERS if name in headers},
    }


def attempt(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Answer, Any]:
    """Call an azure-storage-blob operation once (its client should not retry) and return its answer,
    refusal or not, with its result (None if refused)."""
    seen: list[Any] = []

    def hook(response: PipelineResponse) -> None:
        seen.append(response.http_response)

    try:
        result = call(*args, raw_response_hook=hook, **kwargs)
    except HttpResponseError as err:
        if err.response is None:
            return {"exception": type(err).__name__}, None
        answer = answer_of(err.response)
        answer["error_code"] = answer["error_code"] or err.error_code
        return answer, None
    except AzureError as err:  # no answer: the connection was closed (a body refused before it was read)
        return {"exception": type(err).__name__}, None
    return answer_of(seen[-1]), result


def refused(answer: Answer) -> bool:
    """Whether the request got no success answer."""
    return not 200 <= answer.get("status", 0) < 300


@dataclass(frozen=True)
class Target:
    """The container the suite runs against: its URL with a full SAS and, if any, with one lacking delete."""

    url: str = field(repr=False)
    no_delete_url: str | None = field(repr=False)
    service: str  # the URL without its query: safe to show

    def container(self, *, no_delete: bool = False, retry: bool = False) -> ContainerClient:
        """A client of the container; without ``retry``, each call is one request."""
        url = self.no_delete_url if no_delete else self.url
        assert url is not None
        return ContainerClient.from_container_url(url, **({} if retry else {"retry_total": 0}))


class Recorder:
    """The answers of one run, rewritten to ``path`` after every step (a crashed run keeps what it saw)."""

    def __init__(self, path: Path, service: str) -> None:
        from azure.storage.blob import __version__ as sdk_version

        self.path = path
        self.data: dict[str, Any] = {
            "service": public_url(service),
            "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "azure_storage_blob": sdk_version,
            "python": sys.version.split()[0],
            "scenarios": {},
        }

    def record(self, scenario: str, step: str, answer: Answer) -> Answer:
        """Keep ``answer`` as ``scenario``/``step`` (both must be in :data:`SCENARIOS`) and write the file."""
        if step not in SCENARIOS.get(scenario, ()):
            raise KeyError(f"unknown live scenario step {scenario}/{step}: add it to SCENARIOS")
        self.data["scenarios"].setdefault(scenario, {})[step] = answer
        self.write()
        return answer

    def write(self) -> None:
        text = redact(json.dumps(self.data, indent=2, sort_keys=False)) + "\n"
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.path)
