"""Scale simulation (issue 14): many simulated tasks in a few worker processes, through the throttling fault
proxy (tests/faultproxy.py) to Azurite, with figures against the ideal of the bucket.

:func:`simulate` runs one job: ``tasks`` tasks (tests/scale_tasks.py: a tracked ``stdout.txt``, ``save_many``
of small files, one larger ``save``) as threads spread over ``processes`` worker processes (this file run
as ``python scale_sim.py worker``), started over ``ramp_s`` seconds. The proxy, in this process, limits the
account to ``requests_per_s`` and ``mib_per_s``. Each worker prepares its files, waits for the common start,
runs its tasks until they end or the job's deadline, then reads every blob back straight from Azurite and
reports in one JSON line: task outcomes, blobs against files, its CPU, and the write-to-visible delays of
the logs of the tasks it watches. Tasks still running at the deadline count as timed out (the worker exits
without waiting for them), so a run is bounded whatever the library does.

Knobs (environment; ``BATCHFILES_BENCH_QUICK=1`` picks the quick defaults in brackets, for CI):
``BATCHFILES_BENCH_TASKS`` 200 [40], ``_PROCESSES`` 4 [2], ``_SMALL_FILES`` 8, ``_SMALL_KIB`` 4,
``_LARGE_MIB`` 1 [0.25], ``_APP_S`` (how long each task's application writes its log) 2, ``_LINE_MS`` 100,
``_FLUSH_S`` 1, ``_RPS`` 80, ``_MIBPS`` 4 [1], ``_BURST_S`` (bucket size in seconds of rate) 1,
``_RETRY_AFTER_S`` 1 (the header on 503 answers; benches/test_bench_throttling.py also runs the job
without it), ``_TIMEOUT_SHARE`` (share of refusals answered 500 OperationTimedOut) 0, ``_RAMP_S`` 2,
``_WATCHED`` (tasks whose log delay is sampled) 8 [4], ``_WATCH_MS`` 200, ``_DEADLINE_S`` 300 [90].
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))  # the proxy and the simulated tasks

from faultproxy import MIB, FaultProxy, Throttle
from procstat import process_tree_cpu
from scale_tasks import (
    KIB,
    LogWatcher,
    TaskResult,
    Verdict,
    Workload,
    connection_string,
    cpu_seconds,
    log_delays,
    percentile,
    prepare_task,
    run_task,
    summary_of_errors,
    verify_task,
)

_STDERR: dict[int, Any] = {}  # worker pid -> its stderr file
READY_TIMEOUT_S = 120.0  # workers importing and writing their files
VERIFY_MARGIN_S = 180.0  # workers reading every blob back after the deadline


@dataclass(frozen=True)
class SimConfig:
    """One simulated job (see the module's docstring for the knobs)."""

    tasks: int = 200
    processes: int = 4
    workload: Workload = field(default_factory=Workload)
    requests_per_s: float | None = 80.0
    mib_per_s: float | None = 4.0
    burst_s: float = 1.0
    retry_after_s: float | None = 1.0
    timeout_share: float = 0.0
    ramp_s: float = 2.0
    watched: int = 8
    watch_every_s: float = 0.2
    deadline_s: float = 300.0
    seed: int = 14

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> SimConfig:
        env = dict(os.environ if env is None else env)
        quick = env.get("BATCHFILES_BENCH_QUICK", "") not in ("", "0")

        def knob(name: str, full: float, fast: float | None = None) -> float:
            return float(env.get(f"BATCHFILES_BENCH_{name}", fast if quick and fast is not None else full))

        workload = Workload(
            small_files=int(knob("SMALL_FILES", 8)),
            small_bytes=int(knob("SMALL_KIB", 4) * KIB),
            large_bytes=int(knob("LARGE_MIB", 1, 0.25) * MIB),
            app_s=knob("APP_S", 2),
            line_every_s=knob("LINE_MS", 100) / 1000,
            flush_interval=knob("FLUSH_S", 1),
        )
        rps, mibps = knob("RPS", 80), knob("MIBPS", 4, 1)
        return cls(
            tasks=int(knob("TASKS", 200, 40)),
            processes=int(knob("PROCESSES", 4, 2)),
            workload=workload,
            requests_per_s=rps or None,
            mib_per_s=mibps or None,
            burst_s=knob("BURST_S", 1),
            retry_after_s=knob("RETRY_AFTER_S", 1),
            timeout_share=knob("TIMEOUT_SHARE", 0),
            ramp_s=knob("RAMP_S", 2),
            watched=int(knob("WATCHED", 8, 4)),
            watch_every_s=knob("WATCH_MS", 200) / 1000,
            deadline_s=knob("DEADLINE_S", 300, 90),
        )

    def throttle(self) -> Throttle:
        burst_requests = None if self.requests_per_s is None else max(1.0, self.requests_per_s * self.burst_s)
        burst_mib = None if self.mib_per_s is None else self.mib_per_s * self.burst_s
        return Throttle(
            requests_per_s=self.requests_per_s,
            mib_per_s=self.mib_per_s,
            burst_requests=burst_requests,
            burst_mib=burst_mib,
            retry_after_s=self.retry_after_s,
            timeout_share=self.timeout_share,
        )

    def knobs(self) -> dict[str, Any]:
        return {**asdict(self), "workload": asdict(self.workload)}


# --- the driver (this process: the proxy) ------------------------------------------------------------------


def simulate(azurite: Any, config: SimConfig, *, throttled: bool = True) -> dict[str, Any]:
    """Run one job through the proxy (throttling unless ``throttled`` is False) and return its figures."""
    from azure.storage.blob import BlobServiceClient
    from batchfiles import prepare_output_storage
    from batchfiles.testing import ACCOUNT_NAME

    job_id = f"sim-{'throttled' if throttled else 'free'}-{uuid.uuid4().hex[:8]}"
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        prepare_output_storage(service, job_id).close()
    task_ids = [f"task-{i:04d}" for i in range(config.tasks)]
    offsets = {t: config.ramp_s * i / max(1, config.tasks) for i, t in enumerate(task_ids)}
    watched = set(task_ids[:: max(1, config.tasks // max(1, config.watched))][: config.watched])
    throttle = config.throttle() if throttled else None
    azurite_proc = getattr(azurite, "_proc", None)
    proxy = FaultProxy(  # Retry-After as the config says, also in the strict test pass
        azurite.port,
        seed=config.seed,
        throttle=throttle,
        deadline_s=config.deadline_s + 60,
        throttle_retry_after=True,
    )
    workers: list[subprocess.Popen[str]] = []
    with proxy:
        try:
            for n in range(config.processes):
                mine = task_ids[n :: config.processes]
                spec = {
                    "via_proxy": connection_string(proxy.url_for(ACCOUNT_NAME)),
                    "direct": azurite.connection_string,
                    "job_id": job_id,
                    "tasks": {t: offsets[t] for t in mine},
                    "watched": sorted(watched & set(mine)),
                    "watch_every_s": config.watch_every_s,
                    "workload": asdict(config.workload),
                    "seed": config.seed,
                    "deadline_s": config.deadline_s,
                }
                workers.append(_spawn(spec))
            give_up = time.monotonic() + READY_TIMEOUT_S
            for w in workers:
                line = _readline(w, give_up - time.monotonic())
                if line.strip() != "ready":
                    raise RuntimeError(f"worker {w.pid} did not get ready: {line!r}")
            start_at = time.time() + 0.5
            proxy_cpu0, azurite_cpu0 = cpu_seconds(), _cpu_of(azurite_proc)
            for w in workers:
                assert w.stdin is not None
                w.stdin.write(f"go {start_at!r}\n")
                w.stdin.flush()
            reports = _collect(workers, config.deadline_s + VERIFY_MARGIN_S)
            counts, timeline = proxy.counts, proxy.timeline(1.0)
            proxy_cpu, azurite_cpu = cpu_seconds() - proxy_cpu0, _cpu_of(azurite_proc) - azurite_cpu0
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                w.wait()
                _STDERR.pop(w.pid).close()
    return _figures(config, throttle, start_at, reports, counts, timeline, proxy_cpu, azurite_cpu)


def _cpu_of(proc: Any) -> float:
    return process_tree_cpu(proc.pid) if proc is not None else 0.0


def _spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    """A worker, its stderr in a temporary file (a pipe nobody reads could fill up and block it)."""
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by simulate() once the worker is done
    worker = subprocess.Popen(
        [sys.executable, __file__, "worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    _STDERR[worker.pid] = errors
    assert worker.stdin is not None
    worker.stdin.write(json.dumps(spec) + "\n")
    worker.stdin.flush()
    return worker


def _readline(worker: subprocess.Popen[str], timeout: float) -> str:
    """One line of the worker's stdout, or "" once ``timeout`` seconds have passed (the worker is killed)."""
    timer = threading.Timer(max(0.0, timeout), worker.kill)
    timer.start()
    try:
        assert worker.stdout is not None
        return worker.stdout.readline()
    finally:
        timer.cancel()


def _collect(workers: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    """Every worker's report; a worker silent past ``timeout`` is killed and reported as such."""
    give_up = time.monotonic() + timeout
    reports = []
    for w in workers:
        line = _readline(w, give_up - time.monotonic())
        try:
            reports.append(json.loads(line))
        except json.JSONDecodeError:
            errors = _STDERR.get(w.pid)
            tail = b""
            if errors is not None:
                errors.seek(0)
                tail = errors.read()[-800:]
            reports.append({"crashed": f"worker {w.pid} gave no report: {tail.decode(errors='replace')}"})
    return reports


def _figures(
    config: SimConfig,
    throttle: Throttle | None,
    start_at: float,
    reports: list[dict[str, Any]],
    counts: dict[str, int],
    timeline: list[dict[str, float]],
    proxy_cpu: float,
    azurite_cpu: float,
) -> dict[str, Any]:
    results = [TaskResult(**r) for rep in reports for r in rep.get("results", [])]
    verdict = Verdict()
    for rep in reports:
        verdict.add(Verdict(**rep.get("verdict", {})))
    delays = [d for rep in reports for d in rep.get("log_delays", [])]
    never = sum(rep.get("log_never_visible", 0) for rep in reports)
    ended = [r.ended for r in results]
    wall = (max(ended) if ended else time.time()) - start_at
    served, requests = counts["forwarded"], counts["requests"]
    ideal_bytes = ideal_requests = None
    if throttle is not None and throttle.mib_per_s:
        ideal_bytes = verdict.bytes_expected / (throttle.mib_per_s * MIB)
    if throttle is not None and throttle.requests_per_s:
        ideal_requests = served / throttle.requests_per_s
    floor = config.ramp_s + config.workload.app_s  # the last task's application alone
    ideal = max(floor, ideal_bytes or 0, ideal_requests or 0)
    per_second = [b["requests"] for b in timeline if b["requests"]]
    served_per_second = [b["forwarded"] for b in timeline if b["forwarded"]]
    figures: dict[str, Any] = {
        "tasks": config.tasks,
        "processes": config.processes,
        "tasks_failed": sum(r.failed for r in results) + config.tasks - len(results),
        "tasks_timed_out": sum(rep.get("timed_out", 0) for rep in reports),
        "workers_crashed": [rep["crashed"] for rep in reports if "crashed" in rep],
        "verify_errors": [e for rep in reports for e in rep.get("verify_errors", [])][:5],
        "errors": summary_of_errors(results),
        **asdict(verdict),
        "requests": requests,
        "requests_served": served,
        "throttled": counts["throttled"],
        "server_busy": counts["server_busy"],
        "operation_timed_out": counts["timed_out"],
        "retry_amplification": round(requests / served, 3) if served else None,
        "throttled_per_served": round(counts["throttled"] / served, 3) if served else None,
        "first_attempts": counts["first_attempts"],
        "first_attempt_throttled_share": (
            round(counts["first_attempts_throttled"] / counts["first_attempts"], 3)
            if counts["first_attempts"]
            else None
        ),
        "bytes_up": counts["bytes_up"],
        "bytes_down": counts["bytes_down"],
        "bytes_throttled": counts["bytes_throttled"],
        "wall_s": [round(wall, 3)],
        "ideal_s": round(ideal, 3),
        "ideal_bytes_s": None if ideal_bytes is None else round(ideal_bytes, 3),
        "ideal_requests_s": None if ideal_requests is None else round(ideal_requests, 3),
        "wall_vs_ideal": round(wall / ideal, 3),
        "wall_vs_ideal_bytes": None if ideal_bytes is None else round(wall / max(floor, ideal_bytes), 3),
        "request_rate_p50": percentile(per_second, 0.5),
        "request_rate_p90": percentile(per_second, 0.9),
        "request_rate_max": max(per_second, default=None),
        "request_rate_p90_vs_bucket": (
            round(percentile(per_second, 0.9) / throttle.requests_per_s, 3)
            if throttle is not None and throttle.requests_per_s and per_second
            else None
        ),
        "served_rate_p50": percentile(served_per_second, 0.5),
        "served_rate_max": max(served_per_second, default=None),
        "bucket_requests_per_s": None if throttle is None else throttle.requests_per_s,
        "bucket_mib_per_s": None if throttle is None else throttle.mib_per_s,
        "log_lines": len(delays) + never,
        "log_never_visible": never,
        "log_p50_s": _round(percentile(delays, 0.5)),
        "log_p99_s": _round(percentile(delays, 0.99)),
        "log_max_s": _round(max(delays, default=None)),
        "cpu_s": [round(sum(rep.get("cpu_s", 0.0) for rep in reports), 3)],
        "proxy_cpu_s": round(proxy_cpu, 3),
        "server_cpu_s": [round(azurite_cpu, 3)],
        "timeline": [[b["requests"], b["forwarded"], b["throttled"]] for b in timeline],
        "knobs": config.knobs(),
    }
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- a worker process --------------------------------------------------------------------------------------


def worker() -> None:
    """Run the tasks of one worker: config on the first stdin line, "ready" on stdout, "go START" on stdin,
    then one JSON line of results on stdout; exits without waiting for tasks still running."""
    spec = json.loads(sys.stdin.readline())
    workload = Workload(**spec["workload"])
    with tempfile.TemporaryDirectory(prefix="batchfiles-sim-", ignore_cleanup_errors=True) as root:
        folders = {
            t: prepare_task(Path(root), t, workload, random.Random(f"{spec['seed']}-{t}"))
            for t in spec["tasks"]
        }
        print("ready", flush=True)
        start_at = float(sys.stdin.readline().split()[1])
        report = _run_worker(spec, folders, workload, start_at)
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()
    os._exit(0)  # tasks still running at the deadline are abandoned


def _run_worker(
    spec: dict[str, Any], folders: dict[str, Path], workload: Workload, start_at: float
) -> dict[str, Any]:
    results: dict[str, TaskResult] = {}
    watcher = LogWatcher(spec["direct"], spec["job_id"], spec["watched"], spec["watch_every_s"])

    def task(task_id: str, offset: float) -> None:
        time.sleep(max(0.0, start_at + offset - time.time()))
        try:
            results[task_id] = run_task(
                spec["via_proxy"], spec["job_id"], task_id, folders[task_id], workload
            )
        except Exception as exc:  # a bug of the simulation itself; still a figure
            results[task_id] = TaskResult(task_id, errors={"task": f"{type(exc).__name__}: {exc}"})

    threads = [
        threading.Thread(target=task, args=(t, offset), name=t, daemon=True)
        for t, offset in spec["tasks"].items()
    ]
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    watcher.start()
    for thread in threads:
        thread.start()
    deadline = start_at + spec["deadline_s"]
    for thread in threads:
        thread.join(max(0.0, deadline - time.time()))
    cpu = time.process_time() - cpu0
    watcher.stop.set()
    watcher.join(10)
    finished = dict(results)  # tasks still running may add to ``results`` meanwhile
    timed_out = [t for t in folders if t not in finished]
    for t in timed_out:
        finished[t] = TaskResult(t, started=start_at, ended=deadline, errors={"deadline": "still running"})
    verdict, verify_errors = Verdict(), []
    for t, result in finished.items():
        try:
            verdict.add(verify_task(spec["direct"], spec["job_id"], result, folders[t]))
        except Exception as exc:  # counted: a task whose blobs could not be read back
            verify_errors.append(f"{t}: {type(exc).__name__}: {exc}"[:300])
    delays, never = [], 0
    for t in spec["watched"]:
        d, n = log_delays(finished[t].lines, watcher.seen.get(t, []))
        delays += d
        never += n
    return {
        "results": [replace(r, lines=[]).to_json() for r in finished.values()],
        "timed_out": len(timed_out),
        "verdict": asdict(verdict),
        "verify_errors": verify_errors,
        "cpu_s": cpu,
        "log_delays": delays,
        "log_never_visible": never,
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["worker"]:
        sys.exit(__doc__)
    worker()
