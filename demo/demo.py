"""The batchfiles demo: a render job on an embedded Azurite, driven through the CLI as Batch tasks would be.

Run it with `make demo`. Every step prints the command it runs; see the README for what each one shows.
With --view (`make view-demo`) it then serves the job's page (`batchfiles view`), opens it in the browser
and keeps Azurite running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from batchfiles import naming
from batchfiles.testing import Azurite

DEMO = Path(__file__).resolve().parent
OUT = DEMO / "out"
JOB_ID = "render-demo"
OUTPUTS = ["--output", "frames/*.png", "--output", "thumbs/*.png=TaskPreview"]
OUTPUTS += ["--output", "crash-report.txt@failure"]
TASKS = [  # task id, first frame, last frame, extra task arguments
    ("frames-1-3", 1, 3, []),
    ("frames-4-6", 4, 6, []),
    ("frames-7-9", 7, 9, ["--fail-at", "8"]),  # fails on purpose: only its @failure outputs tell why
]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def batchfiles(*args: str, env: dict[str, str], cwd: Path | None = None, echo: bool = True) -> str:
    """Run the batchfiles CLI as a user would; show the command and (with ``echo``) what it printed."""
    print(f"$ batchfiles {' '.join(shlex.quote(a) for a in args)}", flush=True)
    command = [sys.executable, "-m", "batchfiles", *args]
    result = subprocess.run(command, env=env, cwd=cwd, text=True, capture_output=True)
    output = re.sub(r"sig=[^&\s]+", "sig=…", (result.stdout + result.stderr).rstrip())  # keep secrets off
    if output and (echo or result.returncode):
        print("  " + output.replace("\n", "\n  "), flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo failed: batchfiles {args[0]} exited with {result.returncode}")
    return result.stdout.strip()


def run_task(task_id: str, first: int, last: int, extra: list[str], env: dict[str, str], work: Path) -> int:
    """One Batch task: `batchfiles run` around the renderer, in a working directory of its own; meanwhile a
    client follows its log from storage with `batchfiles logs -f`."""
    cwd = work / task_id
    cwd.mkdir()
    follower = follow_live_log(task_id, env)
    task_env = {**env, "AZ_BATCH_TASK_ID": task_id, "PYTHONPATH": str(DEMO)}
    command = ["run", "--flush-interval", "0.5", *OUTPUTS, "--", sys.executable, "-u", str(DEMO / "task.py")]
    command += [str(first), str(last), *extra]
    shown = " ".join(
        shlex.quote(a) for a in [*OUTPUTS, "--", "python", "task.py", *command[-2 - len(extra) :]]
    )
    print(f"$ AZ_BATCH_TASK_ID={task_id} batchfiles run {shown}", flush=True)
    code = subprocess.Popen([sys.executable, "-m", "batchfiles", *command], env=task_env, cwd=cwd).wait()
    print(f"  task {task_id} exited with {code}")
    try:  # it ends by itself once `run` has closed the log
        follower.wait(timeout=30)
    except subprocess.TimeoutExpired:
        follower.kill()
    return code


def follow_live_log(task_id: str, env: dict[str, str]) -> subprocess.Popen:
    """From the client, follow the task's log in storage while it runs (it is saved live, not only when
    the task exits): `batchfiles logs -f` waits for the task to start and ends when its log is closed."""
    args = ["logs", JOB_ID, task_id, "--file", "stdout.txt", "--follow", "--poll-interval", "0.3"]
    print(f"$ batchfiles {' '.join(args)} &", flush=True)
    follower = subprocess.Popen(
        [sys.executable, "-m", "batchfiles", "--quiet", *args], env=env, stdout=subprocess.PIPE, text=True
    )

    def show() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            print(f"  [live from storage] {line.rstrip()}", flush=True)

    threading.Thread(target=show, daemon=True).start()
    return follower


def view(client_env: dict[str, str]) -> None:
    """Serve the job's page with `batchfiles view` until Ctrl-C (which reaches it too: it stops cleanly)."""
    step("8. Client: the job in the browser: previews, failed tasks, logs (Ctrl-C stops)")
    print(f"$ batchfiles view {JOB_ID}", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "batchfiles", "view", JOB_ID], env=client_env)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.wait()


def main(then: Callable[[dict[str, str]], None] | None = None) -> None:
    """The demo job; then ``then(client_env)`` while Azurite still runs (``--view``: :func:`view`)."""
    shutil.rmtree(OUT, ignore_errors=True)
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="batchfiles-demo-") as tmp:
        work = Path(tmp)
        client_env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        for name in ("AZ_BATCH_JOB_ID", "AZ_BATCH_TASK_ID", "BATCHFILES_CONTAINER_URL"):
            client_env.pop(name, None)
        print(f"Azurite (in memory) at {azurite.account_url}")

        step("1. Client: prepare the job's container, named by the conventions")
        batchfiles("prepare", JOB_ID, env=client_env)
        print(f"  (naming.container_name({JOB_ID!r}) == {naming.container_name(JOB_ID)!r})")

        step("2. Client: a SAS URL for the tasks (read, add, create, write, list; no delete)")
        url = batchfiles("url", JOB_ID, "--expiry", "2h", env=client_env)
        task_env = {k: v for k, v in client_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
        task_env.update(AZ_BATCH_JOB_ID=JOB_ID, BATCHFILES_CONTAINER_URL=url)

        step("3. Tasks: render frames under `batchfiles run`; logs are saved live, outputs on exit")
        codes = {t[0]: run_task(*t, env=task_env, work=work) for t in TASKS}
        assert codes["frames-7-9"] == 3 and all(c == 0 for t, c in codes.items() if t != "frames-7-9"), codes

        step("4. Merge task: fetch every thumbnail, make a contact sheet, save it as the job's output")
        merge = work / "merge"
        merge.mkdir()
        merge_env = {**task_env, "AZ_BATCH_TASK_ID": "merge"}
        batchfiles(
            "get", JOB_ID, "--kind", "TaskPreview", "-o", "thumbs", env=merge_env, cwd=merge, echo=False
        )
        thumbs = sorted(str(p) for p in (merge / "thumbs").rglob("*.png"))
        sheet = [sys.executable, str(DEMO / "render.py"), "sheet", "contact-sheet.png", *thumbs]
        subprocess.run(sheet, cwd=merge, check=True)
        print(f"  contact sheet of {len(thumbs)} thumbnails")
        batchfiles("save", "JobOutput", "contact-sheet.png", env=merge_env, cwd=merge)

        step("5. Client: list every output of the job, its own and each task's")
        batchfiles("list", JOB_ID, env=client_env)

        step("6. Client: why did frames-7-9 fail? Its @failure output and its live-saved stderr say")
        why = OUT / "why"
        for kind, path in (("TaskOutput", "crash-report.txt"), ("TaskLog", "stderr.txt")):
            get = ("get", JOB_ID, "--task", "frames-7-9", "--kind", kind, path, "-o", str(why))
            batchfiles(*get, env=client_env)
        for name in ("TaskOutput/crash-report.txt", "TaskLog/stderr.txt"):
            print(f"  {name}: {(why / 'frames-7-9' / name).read_text().strip()}")

        step(f"7. Client: download everything, MD5-verified, into {OUT}")
        files = batchfiles("get", JOB_ID, "-o", str(OUT), env=client_env, echo=False).splitlines()
        print(f"  {len(files)} files, as {{task}}/{{Kind}}/{{path}}, and {{Kind}}/{{path}} for the job's own")
        if then is not None:
            then(client_env)
    print("\nDone: Azurite stopped, nothing left running.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view", action="store_true", help="then serve the job's page until Ctrl-C")
    main(view if parser.parse_args().view else None)
