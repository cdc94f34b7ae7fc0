"""``batchfiles view`` in a real browser: Debian's Chromium (/usr/bin/chromium, installed by `make test`)
driven by Playwright, against Azurite and a 60-task job whose TaskPreview PNGs the test makes.

Every thumbnail is shown; the task that exited non-zero is marked; a line appended to a task's log through a
tracked save appears on the open page within 3 s; a task's ``evil.html`` / ``evil.svg`` and a file named
like markup run no script, in the page or opened on their own; and no page, URL or response holds ``sig=``,
the SAS's signature or the account key. These tests fail (never skip) when the browser is missing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles import TaskOutputStorage, naming, output_storage_container_url
from view_helpers import CHROMIUM, make_job, put_log, serve, view_env

TASKS = 60
FAILED = 7
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
EVIL_HTML = "<script>document.title='pwned';alert('html')</script><img src=x onerror=\"alert('img')\">"
EVIL_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg\')">'
    "<script>alert('svg script');document.title='pwned'</script></svg>"
)
MARKUP_NAME = "<img src=x onerror=alert(1)>.txt"
ALL_THUMBNAILS = """() => {
  const imgs = [...document.querySelectorAll('#tasks img')];
  return imgs.length >= %d && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium; a missing browser or Playwright fails the tests with what to do."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install '.[test]' (make test does it)")
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"no {CHROMIUM}: run `make test` (installs it with apt as root) or apt-get install -y chromium"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Recorder:
    """Every response the browser got, and every dialog a script opened."""

    def __init__(self) -> None:
        self.responses: list[Any] = []
        self.dialogs: list[str] = []

    def attach(self, page: Any) -> Any:
        page.on("response", self._response)
        page.on("dialog", self._dialog)
        return page

    def _response(self, response: Any) -> None:
        self.responses.append(response)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def texts(self) -> Iterator[str]:
        for response in self.responses:
            yield response.url
            yield json.dumps(response.headers)
            if "event-stream" in response.headers.get("content-type", ""):
                continue  # still open: its text is the log's, and the page shows it
            try:
                yield response.body().decode("utf-8", "replace")
            except Exception:  # a download's body is not kept by the browser; its URL and headers are
                continue


def test_job_page_in_chromium(chromium: Any, service: BlobServiceClient, job_id: str, tmp_path: Path) -> None:
    make_job(service, job_id, TASKS, failed=(FAILED,))
    evil = TaskOutputStorage.from_service(service, job_id, "task-0")
    evil.save_text("TaskOutput", EVIL_HTML, "evil.html")
    evil.save_text("TaskOutput", EVIL_SVG, "evil.svg")
    evil.save_text("TaskOutput", "harmless", MARKUP_NAME)
    log = tmp_path / "render.log"
    log.write_text("first line\n")
    live = TaskOutputStorage.from_service(service, job_id, "task-live")
    url = output_storage_container_url(service, job_id, expiry=timedelta(hours=1))
    signature = url.split("sig=")[1].split("&")[0]
    recorder = Recorder()
    with (
        live.save_tracked(log, "render.log", flush_interval=0.3, settle=0.1, linger=0.1),
        serve(job_id, view_env(BATCHFILES_CONTAINER_URL=url)) as served,
    ):
        context = chromium.new_context(accept_downloads=True)
        page = recorder.attach(context.new_page())
        page.goto(served.url)

        # every thumbnail of the 60 tasks (and the live task's card) is shown
        page.wait_for_function(ALL_THUMBNAILS % TASKS, timeout=15_000)
        assert page.locator("#tasks li.task").count() == TASKS + 1

        # the task that exited 3 is marked, and only it
        failed = page.locator(f'#tasks li.task.failed[data-id="task-{FAILED}"]')
        assert failed.locator(".state-failed").inner_text() == "exited 3"
        assert page.locator("#tasks li.task.failed").count() == 1
        assert page.locator('#tasks li[data-id="task-live"] .state').inner_text() == "running"

        # a line appended to the live log appears without a reload (in about 1 s: 0.3 s flush, 0.5 s poll)
        page.click('#tasks li[data-id="task-live"] a.card')
        logs = page.locator("#detail pre.log")
        page.wait_for_function(
            "() => document.querySelector('#detail pre.log')?.textContent.includes('first line')"
        )
        page.evaluate("() => { window.__notReloaded = true; }")
        with log.open("a") as f:
            f.write("appended while watching\n")
        started = time.monotonic()
        page.wait_for_function(
            "() => document.querySelector('#detail pre.log').textContent.includes('appended while watching')",
            timeout=15_000,
        )
        shown_after = time.monotonic() - started
        print(f"appended log line shown after {shown_after:.2f} s")
        assert shown_after < 6.0 and page.evaluate("() => window.__notReloaded === true")
        assert logs.count() == 1

        # hostile outputs: listed, linked as downloads, never run
        page.goto(f"{served.url}#task/task-0")
        page.wait_for_selector("#detail .file a.name >> text=evil.svg")
        title = page.title()
        names = page.locator("#detail a.name").all_inner_texts()
        assert {"evil.html", "evil.svg", MARKUP_NAME} <= set(names)
        assert page.locator("#detail img:not(.inline)").count() == 0  # the markup name stayed text
        for name in ("evil.html", "evil.svg"):
            with page.expect_download() as download:
                page.locator("#detail a.name", has_text=name).click()
            assert download.value.suggested_filename == name
        hrefs = page.eval_on_selector_all(
            "#detail a.name",
            "(links) => links.filter((a) => a.textContent.startsWith('evil')).map((a) => a.href)",
        )
        for href in [*hrefs, *(f"{h}?inline=1" for h in hrefs)]:
            other = recorder.attach(context.new_page())
            with pytest.raises(Exception, match="Download is starting"):
                other.goto(href)
            other.close()
        page.wait_for_timeout(300)
        assert recorder.dialogs == []
        assert page.title() == title != "pwned"
        assert page.evaluate("() => document.querySelectorAll('script:not([src])').length") == 0

        # no signature or key anywhere the browser saw
        seen = [page.url, page.content(), *recorder.texts()]
        assert len(recorder.responses) > TASKS
        for text in seen:
            assert "sig=" not in text and signature not in text and AZURITE_KEY not in text
        context.close()


def test_many_open_logs_leave_the_page_its_connections(
    chromium: Any, service: BlobServiceClient, job_id: str
) -> None:
    """A browser opens at most 6 connections to the server and each live log holds one: a task with 8 open
    logs must not stop the page's updates. Two logs are tailed, the others wait with a "follow live" button
    (a click tails that one in place of the oldest); a log deleted from storage leaves the page."""
    container = make_job(service, job_id, 1)
    for index in range(8):
        put_log(container, "task-busy", f"log {index} line\n", open_=True, name=f"log-{index}.txt")
    with serve(job_id, view_env(BATCHFILES_CONTAINER_URL=_sas(service, job_id))) as served:
        page = chromium.new_page()
        page.goto(f"{served.url}#task/task-busy")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#detail .log-state')].filter("
            "(s) => s.textContent === 'live').length === 2"
        )
        make_job(service, job_id, 2)  # task-1 appears: the page still polls
        page.wait_for_selector('#tasks li[data-id="task-1"]', timeout=10_000)
        states = page.locator("#detail .log-state").all_inner_texts()
        assert states.count("live") == 2 and len(states) == 8, states
        waiting = page.locator("#detail button.follow:visible")
        assert waiting.count() == 6
        row = page.locator("#detail div.file", has=page.locator("a.name", has_text="log-7.txt"))
        row.locator("button.follow").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#detail div.file')].find((r) => r.textContent.includes"
            "('log-7.txt')).querySelector('pre.log').textContent.includes('log 7 line')"
        )
        states = page.locator("#detail .log-state").all_inner_texts()
        assert states.count("live") == 2 and "paused" in states, states
        container.delete_blob(naming.blob_name("TaskLog", "log-7.txt", "task-busy"))
        page.wait_for_function(
            "() => document.querySelectorAll('#detail pre.log').length === 7", timeout=10_000
        )
        page.wait_for_function(
            "() => [...document.querySelectorAll('#detail .log-state')].filter("
            "(s) => s.textContent === 'live').length === 2"
        )
        page.close()


def _sas(service: BlobServiceClient, job_id: str) -> str:
    return output_storage_container_url(service, job_id, expiry=timedelta(hours=1))
