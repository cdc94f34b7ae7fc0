"""The README's pictures of `batchfiles view`: runs the demo job, serves its page, and photographs it with
Debian's chromium through Playwright (`pip install playwright`, `apt-get install chromium`).

    python demo/screenshot.py [OUT_DIR]     # docs/view.png (the job) and docs/view-task.png (a failed task)
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from demo import JOB_ID, main

CHROMIUM = "/usr/bin/chromium"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs"


def photograph(client_env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "batchfiles", "view", JOB_ID, "--no-browser"]
    proc = subprocess.Popen(command, env=client_env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 720})
            page.goto(url)
            page.wait_for_function(
                "() => [...document.querySelectorAll('#tasks img')].length > 0 &&"
                " [...document.querySelectorAll('img')].every((i) => i.complete && i.naturalWidth > 0)"
            )
            OUT.mkdir(exist_ok=True)
            page.screenshot(path=OUT / "view.png", full_page=True)
            page.goto(f"{url}#task/frames-7-9")
            page.wait_for_function("() => document.querySelector('#detail pre.log')?.textContent.length > 0")
            page.wait_for_timeout(500)
            page.screenshot(path=OUT / "view-task.png")
            browser.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    print(f"  wrote {OUT / 'view.png'} and {OUT / 'view-task.png'}")


if __name__ == "__main__":
    main(photograph)
