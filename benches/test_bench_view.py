"""``batchfiles view`` in Chromium on a 1,000-task job (Azurite): time to first paint and to every thumbnail.

The job: 1,000 tasks, each with a TaskPreview PNG and a closed log (tests/view_helpers.make_job). The server
is ``python -m batchfiles view`` as users run it; the browser is Debian's chromium through Playwright. The
page lists tasks 200 at a time as its end scrolls into view, so "all thumbnails" includes scrolling to the
end. Figures go to ``extra_info`` (reported by benches/report.py, not asserted): first contentful paint, the
first screen's thumbnails (the first 200 tasks), and all 1,000 thumbnails, from the start of navigation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from batchfiles.testing import Azurite
from knobs import knob
from view_helpers import CHROMIUM, make_job, serve, view_env

TASKS = int(knob("VIEW_TASKS", 1000, quick=200))
JOB = "bench-view"
GROUP = f"view: a {TASKS}-task job in Chromium"
THUMBNAILS_LOADED = """([count, scroll]) => {
  const imgs = [...document.querySelectorAll('#tasks img')].slice(0, count);
  if (scroll) window.scrollTo(0, document.body.scrollHeight);
  return imgs.length >= count && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""
FIRST_PAINT = """() => {
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return paint ? paint.startTime : null;
}"""


@pytest.fixture(scope="module")
def job() -> Iterator[Azurite]:
    with Azurite() as azurite:
        make_job(BlobServiceClient.from_connection_string(azurite.connection_string), JOB, TASKS, failed=(7,))
        yield azurite


def _target(what: str, metric: str, value: float) -> dict[str, Any]:
    return {
        "what": what,
        "metric": metric,
        "op": "<=",
        "value": value,
        "info": True,
        "scale": 1000,
        "unit": " ms",
    }


@pytest.mark.benchmark(group=GROUP)
def test_view_first_paint_and_thumbnails(
    benchmark: Any, job: Azurite, capsys: pytest.CaptureFixture[str]
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no {CHROMIUM}: apt-get install -y chromium (make test does it as root)")
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    with (
        serve(JOB, view_env(AZURE_STORAGE_CONNECTION_STRING=job.connection_string)) as served,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        def load() -> None:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            started = time.perf_counter()
            page.goto(served.url)
            page.wait_for_function(
                THUMBNAILS_LOADED, arg=[min(200, TASKS), False], timeout=60_000, polling=50
            )
            figures["first_200_thumbnails_s"] = time.perf_counter() - started
            page.wait_for_function(THUMBNAILS_LOADED, arg=[TASKS, True], timeout=120_000, polling=100)
            figures["all_thumbnails_s"] = time.perf_counter() - started
            figures["first_paint_s"] = (page.evaluate(FIRST_PAINT) or 0) / 1000
            page.close()

        benchmark.pedantic(load, rounds=1, iterations=1)
        browser.close()
    benchmark.extra_info.update(
        {k: round(v, 3) for k, v in figures.items()},
        tasks=TASKS,
        wall_s=[round(figures["all_thumbnails_s"], 3)],
    )
    benchmark.extra_info["targets"] = [
        _target("first contentful paint", "first_paint_s", 1.0),
        _target("first 200 tasks' thumbnails", "first_200_thumbnails_s", 3.0),
        _target(f"all {TASKS} thumbnails (scrolled to the end)", "all_thumbnails_s", 15.0),
    ]
    with capsys.disabled():
        paint, first, every = (
            figures[k] for k in ("first_paint_s", "first_200_thumbnails_s", "all_thumbnails_s")
        )
        print(
            f"\n    {TASKS} tasks: first paint {paint * 1000:.0f} ms, "
            f"first 200 thumbnails {first:.2f} s, all {TASKS} thumbnails {every:.2f} s"
        )
