"""Saving to Azurite: batchfiles vs plain azure-storage-blob, measured in the same run.

Groups (targets from issue 4; ``benches/report.py`` checks them and prints the ratios):

- ``save 1 GiB file``: ``TaskOutputStorage.save`` (``content_md5`` on and off) vs the baselines
  ``BlobClient.upload_blob(stream, max_concurrency=4)`` for wall time (Azurite then does the same work as
  for ours: a CRC-64 of every block) and ``upload_blob(..., validate_content=True)`` for client CPU (it
  hashes every block, as ours does). Wall >= 1.0x; client CPU <= 0.9x with MD5 (issue 21) and <= 0.5x
  without. Client CPU is ``time.process_time()`` of this process; Azurite's CPU (another process, read from
  ``/proc``) is recorded beside it, because Azurite is what bounds the wall time.
- ``peak RSS, 1 GiB file``: the same uploads in a fresh interpreter, each reporting its peak RSS during the
  upload minus its RSS right before. Ours <= 64 MiB + block_size x max_concurrency. The peak is ``VmHWM``,
  reset to the current RSS just before the upload (``/proc/self/clear_refs``), not ``ru_maxrss``: on Linux
  ``ru_maxrss`` survives ``exec``, so a child of this (large) pytest process would report pytest's own peak.
- ``save_many 2,000 x 4 KiB``: ``save_many(max_concurrency=8)`` vs a sequential ``save`` loop: >= 1.25x.
- ``save_many 2,000 x 4 KiB, 5 ms per request``: the same through the project's fault proxy
  (``tests/faultproxy.py``, in a process of its own) delaying every request by 5 ms, as a network would:
  wall >= 5x the loop's, client CPU per file <= 1.0x the loop's.
- ``..., storage on its own core``: the same with Azurite and the proxy on the last CPU and the client on the
  others, as on a node, where storage is remote and the client has the node's cores to itself.

Knobs: ``BATCHFILES_BENCH_GIB`` (size of the large file, default 1), ``BATCHFILES_BENCH_ROUNDS`` (rounds of
each large-file benchmark, default 3), ``BATCHFILES_BENCH_MANY_FILES`` (small files, default 2,000); with
``BATCHFILES_BENCH_QUICK=1``: 96 MiB (above ``upload_blob``'s 64 MiB single put, so the baselines send blocks
too), 2 rounds, 300 small files, 2 rounds of them.

Memory: Azurite runs with ``--inMemoryPersistence`` and frees a deleted blob's data only in its garbage
collection, every 10 minutes. Deleting after each round keeps the listing small, but the memory comes back
only when Azurite stops, so the module's Azurite is restarted (outside any timing) before each large-file
benchmark: every variant starts from an empty server, and it holds at most ROUNDS x SIZE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from batchfiles import TaskOutputStorage, prepare_output_storage
from batchfiles.testing import Azurite
from knobs import knob
from procstat import pin_tree, process_tree_cpu

MIB = 1 << 20
GIB = 1 << 30
SIZE = max(MIB, round(knob("GIB", 1, 96 / 1024) * GIB) // MIB * MIB)
ROUNDS = int(knob("ROUNDS", 3, 2))
JOB = "bench-storage"
BLOCK_SIZE = 8 * MIB  # TaskOutputStorage.save defaults
CONCURRENCY = 4
LARGE = f"{SIZE / GIB:g} GiB" if SIZE >= GIB else f"{SIZE // MIB} MiB"  # in group names
RSS_TARGET_MIB = 64 + BLOCK_SIZE * CONCURRENCY / MIB

pytestmark = pytest.mark.timeout(1800)

# --- Azurite -----------------------------------------------------------------------------------------------


class Server:
    """The module's Azurite, restartable so a large-file benchmark starts from an empty one."""

    def __init__(self) -> None:
        self.azurite = Azurite().start()

    @property
    def connection_string(self) -> str:
        return self.azurite.connection_string

    def restart(self) -> None:
        self.azurite.stop()
        self.azurite = Azurite().start()

    @property
    def pid(self) -> int | None:
        """Azurite's process id (its node process's parent)."""
        proc = getattr(self.azurite, "_proc", None)
        return proc.pid if proc is not None else None

    def cpu(self) -> float:
        return process_tree_cpu(self.pid) if self.pid is not None else 0.0

    def container(self) -> ContainerClient:
        service = BlobServiceClient.from_connection_string(self.connection_string)
        return prepare_output_storage(service, JOB)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.azurite.stop()


# --- large file --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large_file() -> Iterator[tuple[Path, bytes]]:
    """(path, MD5) of a SIZE-byte file of random bytes, removed after the module."""
    chunk = os.urandom(16 * MIB)
    md5 = hashlib.md5()
    with tempfile.TemporaryDirectory(prefix="batchfiles-bench-") as folder:
        path = Path(folder) / "large.bin"
        with open(path, "wb") as f:
            left = SIZE
            while left:
                piece = chunk[: min(left, len(chunk))]
                f.write(piece)
                md5.update(piece)
                left -= len(piece)
        yield path, md5.digest()


Upload = Callable[[ContainerClient], None]


def _measure_rounds(
    benchmark, server: Server, make_upload: Callable[[], Upload], targets: list[dict], rounds: int = ROUNDS
) -> None:
    """``rounds`` timed uploads on a fresh Azurite, recording client and Azurite CPU per round and deleting
    every blob after each round."""
    server.restart()
    container = server.container()
    upload = make_upload()
    wall: list[float] = []
    cpu: list[float] = []
    server_cpu: list[float] = []

    def one_round() -> None:
        w0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu()
        upload(container)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        server_cpu.append(server.cpu() - s0)

    def delete_all() -> None:
        for blob in container.list_blobs():
            container.delete_blob(blob.name)

    benchmark.extra_info.update(bytes=SIZE, targets=targets)
    try:
        benchmark.pedantic(one_round, teardown=delete_all, rounds=rounds)
    finally:
        benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, server_cpu_s=server_cpu)
        container.close()


def _save(server: Server, large_file: tuple[Path, bytes], **options) -> Callable[[], Upload]:
    """``TaskOutputStorage.save`` of the large file, checking the stored size and Content-MD5."""
    path, md5 = large_file

    def make_upload() -> Upload:
        storage = TaskOutputStorage.from_connection_string(server.connection_string, JOB, "task-1")

        def upload(_: ContainerClient) -> None:
            ref = storage.save("TaskOutput", path, "large.bin", **options)
            assert ref.size == SIZE
            assert ref.content_md5 == (md5 if options.get("content_md5", True) else None)

        return upload

    return make_upload


def _upload_blob(path: Path, **options) -> Callable[[], Upload]:
    """``BlobClient.upload_blob`` of an open stream of the large file."""

    def upload(container: ContainerClient) -> None:
        with open(path, "rb") as stream:
            container.get_blob_client("large.bin").upload_blob(stream, overwrite=True, **options)

    return lambda: upload


#: Against the validated upload, Azurite does less work (an MD5 of each block in native code, where ours
#: and the plain upload's blocks cost it a CRC-64 in JavaScript): shown, not targeted.
WALL_1X = {
    "what": "wall vs the validated upload",
    "metric": "speedup",
    "op": ">=",
    "value": 1.0,
    "info": True,
}
WALL_SAME_SERVER_WORK = {
    "what": "wall >= 1.0x upload_blob without validate_content (Azurite then does the same CRC-64 work)",
    "metric": "speedup",
    "op": ">=",
    "value": 1.0,
    "against": "test_large_ref_upload_blob_no_validate",
}


@pytest.mark.benchmark(group=f"save {LARGE} file")
def test_large_baseline_upload_blob_validate(benchmark, server, large_file):
    upload = _upload_blob(large_file[0], max_concurrency=CONCURRENCY, validate_content=True)
    _measure_rounds(benchmark, server, upload, [])


@pytest.mark.benchmark(group=f"save {LARGE} file")
def test_large_save_md5(benchmark, server, large_file):
    targets = [
        WALL_SAME_SERVER_WORK,
        {"what": "client CPU <= 0.9x", "metric": "cpu_ratio", "op": "<=", "value": 0.9},
    ]
    targets.append(WALL_1X)
    _measure_rounds(benchmark, server, _save(server, large_file), targets)


@pytest.mark.benchmark(group=f"save {LARGE} file")
def test_large_save_no_md5(benchmark, server, large_file):
    targets = [
        WALL_SAME_SERVER_WORK,
        {"what": "client CPU <= 0.5x", "metric": "cpu_ratio", "op": "<=", "value": 0.5},
    ]
    targets.append(WALL_1X)
    _measure_rounds(benchmark, server, _save(server, large_file, content_md5=False), targets)


@pytest.mark.benchmark(group=f"save {LARGE} file")
def test_large_ref_upload_blob_no_validate(benchmark, server, large_file):
    """The wall baseline: the SDK's plain upload costs Azurite the same work as ours (its CRC-64 of every
    block, in JavaScript, ~12 s of CPU per GiB, which sets the wall time of either). Meaningful above
    64 MiB only: up to that size (``max_single_put_size``) ``upload_blob`` sends one Put Blob, for which
    Azurite computes an MD5 instead."""
    upload = _upload_blob(large_file[0], max_concurrency=CONCURRENCY)
    _measure_rounds(benchmark, server, upload, [])


# --- peak RSS, in a fresh interpreter ----------------------------------------------------------------------

RSS_SCRIPT = r"""
import json, resource, sys
from azure.storage.blob import BlobServiceClient
from batchfiles import TaskOutputStorage

conn, job, container, path, how = sys.argv[1:6]

def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

if how == "save":
    storage = TaskOutputStorage.from_connection_string(conn, job, "task-rss")
    storage.save_bytes("TaskOutput", b"warm-up", "warm-up.txt")  # imports done, connection open
    upload = lambda: storage.save("TaskOutput", path, "large.bin")
else:
    service = BlobServiceClient.from_connection_string(conn)
    blob = service.get_blob_client(container, "large.bin")
    blob.upload_blob(b"warm-up", overwrite=True)
    def upload():
        with open(path, "rb") as stream:
            blob.upload_blob(stream, overwrite=True, max_concurrency=4, validate_content=True)
try:  # reset VmHWM, the peak RSS of this address space, to the current RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = status_mib("VmRSS")
upload()
peak = status_mib("VmHWM")
print(json.dumps({"rss_before_mib": before, "peak_mib": peak, "rss_delta_mib": peak - before,
                  "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _peak_rss(benchmark, server: Server, path: Path, how: str, targets: list[dict]) -> None:
    server.restart()
    with server.container() as container:
        container_name = container.container_name
    result: dict = {}

    def run() -> None:
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, server.connection_string, JOB, container_name, str(path), how],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        result.update(json.loads(out.stdout))

    benchmark.extra_info.update(bytes=SIZE, targets=targets)
    benchmark.pedantic(run, rounds=1)
    benchmark.extra_info.update(result)


@pytest.mark.benchmark(group=f"peak RSS, {LARGE} file (subprocess)")
def test_rss_baseline_upload_blob_validate(benchmark, server, large_file):
    _peak_rss(benchmark, server, large_file[0], "upload_blob", [])


@pytest.mark.benchmark(group=f"peak RSS, {LARGE} file (subprocess)")
def test_rss_save_md5(benchmark, server, large_file):
    target = {
        "what": f"peak RSS - RSS before <= {RSS_TARGET_MIB:.0f} MiB (64 MiB + 8 MiB x 4)",
        "metric": "rss_delta_mib",
        "op": "<=",
        "value": RSS_TARGET_MIB,
    }
    _peak_rss(benchmark, server, large_file[0], "save", [target])


# --- many small files --------------------------------------------------------------------------------------

N_SMALL = int(knob("MANY_FILES", 2000, 300))
SMALL = 4096
SMALL_ROUNDS = int(knob("SMALL_ROUNDS", 3, 2))
SMALL_GROUP = f"save_many {N_SMALL:,} x 4 KiB"


@pytest.fixture(scope="module")
def small_files() -> Iterator[Path]:
    """N_SMALL files of 4 KiB under 20 folders."""
    with tempfile.TemporaryDirectory(prefix="batchfiles-bench-small-") as folder:
        base = Path(folder)
        for i in range(N_SMALL):
            path = base / f"shot{i % 20:02d}" / f"frame{i:05d}.exr"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(os.urandom(SMALL))
        yield base


def _small_rounds(
    benchmark,
    server: Server,
    save: Callable[[TaskOutputStorage], list],
    targets,
    *,
    link: SlowLink | None = None,
    own_core: bool = False,
    rounds: int = SMALL_ROUNDS,
) -> None:
    """``rounds`` timed saves of the small files on an empty Azurite: directly, or through ``link`` (with
    ``own_core``: Azurite and the proxy on a core of their own)."""
    server.restart()  # an empty Azurite for each variant, as for the large file
    server.container().close()
    connection_string = link.connect() if link is not None else server.connection_string
    wall: list[float] = []
    cpu: list[float] = []
    server_cpu: list[float] = []

    def setup():
        # A task of its own per round: every round creates N_SMALL new blobs (4 KiB each).
        storage = TaskOutputStorage.from_connection_string(
            connection_string, JOB, f"small-{uuid.uuid4().hex[:8]}"
        )
        return (storage,), {}

    def one_round(storage: TaskOutputStorage) -> None:
        w0, c0, s0 = time.perf_counter(), time.process_time(), server.cpu()
        saved = save(storage)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        server_cpu.append(server.cpu() - s0)
        assert len(saved) == N_SMALL
        storage.close()

    benchmark.extra_info.update(files=N_SMALL, targets=targets)
    with storage_on_its_own_core(link.storage_pids()) if own_core else contextlib.nullcontext():
        benchmark.pedantic(one_round, setup=setup, rounds=rounds)
    benchmark.extra_info.update(wall_s=wall, cpu_s=cpu, server_cpu_s=server_cpu)


@pytest.mark.benchmark(group=SMALL_GROUP)
def test_many_save_many(benchmark, server, small_files):
    target = {"what": "save_many >= 1.25x", "metric": "speedup", "op": ">=", "value": 1.25}
    _small_rounds(benchmark, server, _save_many_8(small_files), [target])


def _sequential(small_files: Path) -> Callable[[TaskOutputStorage], list]:
    files = sorted(p for p in small_files.rglob("*.exr"))

    def loop(storage: TaskOutputStorage) -> list:
        return [storage.save("TaskOutput", p, p.relative_to(small_files).as_posix()) for p in files]

    return loop


def _save_many_8(small_files: Path) -> Callable[[TaskOutputStorage], list]:
    return lambda s: s.save_many("TaskOutput", "**/*.exr", base_dir=small_files, max_concurrency=8)


@pytest.mark.benchmark(group=SMALL_GROUP)
def test_many_baseline_sequential_save(benchmark, server, small_files):
    _small_rounds(benchmark, server, _sequential(small_files), [])


# --- many small files, 5 ms per request --------------------------------------------------------------------

LATENCY_MS = 5
LATENCY_GROUP = f"{SMALL_GROUP}, {LATENCY_MS} ms per request"
LATENCY_OWN_CORE_GROUP = f"{LATENCY_GROUP}, storage on its own core"
LATENCY_ROUNDS = int(knob("LATENCY_ROUNDS", 2, 1))
_PROXY = """
import sys
sys.path.insert(0, sys.argv[1])
from faultproxy import FaultProxy
proxy = FaultProxy(int(sys.argv[2]), random_faults={"delay": 1.0}, delay_ms=int(sys.argv[3]), deadline_s=1800)
with proxy:
    print(proxy.port, flush=True)
    sys.stdin.read()  # until the benchmark closes it
"""


class SlowLink:
    """The fault proxy, in a process of its own, in front of the module's Azurite, delaying every request by
    LATENCY_MS."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.procs: list[subprocess.Popen] = []

    def connect(self) -> str:
        """Start the proxy (after a restart: a new one, since Azurite's port changed) and return a connection
        string through it."""
        from batchfiles.testing import ACCOUNT_KEY, ACCOUNT_NAME

        self.stop()
        tests = str(Path(__file__).parents[1] / "tests")
        proc = subprocess.Popen(
            [sys.executable, "-c", _PROXY, tests, str(self.server.azurite.port), str(LATENCY_MS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        port = int(proc.stdout.readline())
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
        )

    def storage_pids(self) -> list[int]:
        """The processes that stand for the storage account: Azurite and the proxy."""
        return [pid for pid in (self.server.pid, *(proc.pid for proc in self.procs)) if pid is not None]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stdin.close()
            proc.wait(30)
        self.procs.clear()


@pytest.fixture(scope="module")
def slow_link(server: Server) -> Iterator[SlowLink]:
    link = SlowLink(server)
    try:
        yield link
    finally:
        link.stop()


@contextlib.contextmanager
def storage_on_its_own_core(pids: list[int]) -> Iterator[None]:
    """Azurite and the proxy on the last CPU, this thread (and the threads it starts) on the others, as on a
    node, where storage does not share the client's cores; as before on leaving."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs: one for the client, one for storage")
    storage = {max(cpus)}
    for pid in pids:
        pin_tree(pid, storage)
    os.sched_setaffinity(0, cpus - storage)
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)
        for pid in pids:
            pin_tree(pid, cpus)


LATENCY_TARGETS = [
    {"what": "save_many >= 5x", "metric": "speedup", "op": ">=", "value": 5},
    {"what": "client CPU per file <= 1.0x the loop's", "metric": "cpu_ratio", "op": "<=", "value": 1.0},
]


@pytest.mark.benchmark(group=LATENCY_GROUP)
def test_latency_save_many(benchmark, server, slow_link, small_files):
    _small_rounds(
        benchmark, server, _save_many_8(small_files), LATENCY_TARGETS, link=slow_link, rounds=LATENCY_ROUNDS
    )


@pytest.mark.benchmark(group=LATENCY_GROUP)
def test_latency_baseline_sequential_save(benchmark, server, slow_link, small_files):
    _small_rounds(benchmark, server, _sequential(small_files), [], link=slow_link, rounds=LATENCY_ROUNDS)


@pytest.mark.benchmark(group=LATENCY_OWN_CORE_GROUP)
def test_latency_own_core_save_many(benchmark, server, slow_link, small_files):
    _small_rounds(
        benchmark,
        server,
        _save_many_8(small_files),
        LATENCY_TARGETS,
        link=slow_link,
        own_core=True,
        rounds=LATENCY_ROUNDS,
    )


@pytest.mark.benchmark(group=LATENCY_OWN_CORE_GROUP)
def test_latency_own_core_baseline_sequential_save(benchmark, server, slow_link, small_files):
    _small_rounds(
        benchmark, server, _sequential(small_files), [], link=slow_link, own_core=True, rounds=LATENCY_ROUNDS
    )
