"""The numbers and metadata keys of tracked saves, in one place.

The other modules read them as ``limits.NAME`` when they use them, so a test may patch one here (a shorter
watch interval, fewer blocks per part) and every module sees it.
"""

from __future__ import annotations

#: Committed blocks an append blob holds (Azure's limit); past it the save goes on in ``{name}.1``, ...
MAX_BLOCKS = 50_000
#: Largest append block (Azure's classic limit, accepted by every service version).
MAX_BLOCK = 4 * 1024 * 1024
#: Metadata marking part ``k >= 1`` (value ``str(k)``), so a blob that merely has a part's name (a rotated
#: ``app.log.1`` saved on its own, another tracked save) is never counted, deleted or overwritten as one.
PART_KEY = "batchfiles_part"
#: Metadata holding the token of the save writing a blob: set when a save creates a part or resumes one.
WRITER_KEY = "batchfiles_writer"
#: Metadata of the last part of a save that closed cleanly (value ``"1"``): the file is all there, and a
#: follower that has read it all stops. Set with ``If-Match`` on the save's own last ETag, so a blob another
#: writer wrote to after us is never marked. A resume removes it (and every ``batchfiles_`` key but the part
#: mark): the blob grows again.
CLOSED_KEY = "batchfiles_closed"
#: Metadata keys beginning so are batchfiles' own (the writer token, the close mark, ``run``'s outcome).
OWN_PREFIX = "batchfiles_"
#: All of a blob's metadata together, names and values, in bytes (Azure's limit; 400 MetadataTooLarge).
MAX_METADATA = 8 * 1024
#: The widest part mark counted against it (a save of over 10^6 parts is over 100 TiB of log).
MAX_PARTS_MARK = 999_999
#: How many last bytes of an existing blob are compared with the file before resuming.
RESUME_CHECK = 64 * 1024

#: Every save is polled this often (2 ``stat`` calls when idle) to see rotations and send full blocks.
WATCH_INTERVAL = 0.25
#: Once half the blocks are used, regular uploads wait for this many bytes (flushes never wait)...
COALESCE_BYTES = 1024 * 1024
#: ... unless nothing was appended for this many flush intervals.
STALE_INTERVALS = 10
#: While closing, the file is polled this often until it settles or the linger time is over.
SETTLE_POLL = 0.05
#: One step sends for at most this long before other saves get their turn.
STEP_BUDGET = 0.5
#: A storage error is kept (and the save stopped) after this many failed steps in a row...
MAX_FAILED_STEPS = 6
#: ... retried after a backoff doubling from the first value up to the second (seconds).
BACKOFF = (0.5, 30.0)

#: Throttling (503 ServerBusy, 500 OperationTimedOut, 429) is not a fault: the save keeps trying for this
#: many seconds since the first failed step in a row before it keeps the error...
THROTTLED_PATIENCE = 600.0
#: ... each time after the answer's ``Retry-After`` (or the first backoff) plus a random share (full
#: jitter) of a backoff doubling from the first value up to the second (seconds).
THROTTLED_BACKOFF = (1.0, 60.0)
#: Each throttled step raises the coalescing level (up to ``MAX_PRESSURE``): regular uploads then wait
#: for ``THROTTLED_BYTES << (level - 1)`` bytes (at most ``MAX_BLOCK``), so fewer appends carry the bytes...
THROTTLED_BYTES = 256 * 1024
MAX_PRESSURE = 5
#: ... and it falls back one level per this many seconds of appends without throttling. While the level
#: is up, appends get this many azure-core retries: the schedule paces them (after ``Retry-After``, with
#: jitter), and the sync driver's one thread is not held up for every other save by retries in a step.
PRESSURE_RELIEF = 30.0
THROTTLED_CLIENT_RETRIES = 0
