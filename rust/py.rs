//! The PyO3 layer: thin wrappers over the pure Rust modules. Long work runs with the GIL released.
//! This file holds what the library calls; `py/test_support.rs` what only tests and benchmarks call.
//!
//! The classes are `frozen` and keep their state behind a `Mutex` taken with `lock_py_attached`:
//! calls from several Python threads run one at a time, a waiting thread not holding the GIL.

use std::cell::OnceCell;
use std::io;
use std::mem::MaybeUninit;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyList, PyMemoryView, PyString};

use crate::checksum;
use crate::chunk;
use crate::naming::{self, NamingError, StrList};
use crate::track::{self, BlockData, Event};

mod test_support;

/// Every refused naming input is a `ValueError` with the error's text (`paths[3]: ...` for a bulk item).
impl From<NamingError> for PyErr {
    fn from(err: NamingError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// An `OSError` for `err` on `path`. With an OS error code, Python picks the subclass
/// (`FileNotFoundError`, `PermissionError`, `IsADirectoryError`, ...) and sets `errno`,
/// `strerror` and `filename`; otherwise pyo3 picks it from the `io::ErrorKind`.
fn os_error(err: io::Error, path: &Path) -> PyErr {
    let Some(code) = err.raw_os_error() else {
        return err.into();
    };
    let text = err.to_string();
    let strerror = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text)
        .to_owned();
    let filename = path.as_os_str().to_owned();
    #[cfg(windows)] // Python derives errno from the Windows error code
    let args = (0, strerror, filename, code);
    #[cfg(not(windows))]
    let args = (code, strerror, filename);
    PyOSError::new_err(args)
}

/// `value` as a `u64` in `range`, else a `ValueError` naming the argument.
fn count(name: &str, value: i64, range: RangeInclusive<u64>) -> PyResult<u64> {
    let valid = u64::try_from(value).ok().filter(|v| range.contains(v));
    valid.ok_or_else(|| {
        let (min, max) = range.into_inner();
        PyValueError::new_err(if max == u64::MAX {
            format!("{name} must be at least {min}, not {value}")
        } else {
            format!("{name} must be {min} to {max}, not {value}")
        })
    })
}

/// Locks `mutex`, waiting for another thread's call to end with the GIL released.
fn lock<'a, T>(py: Python<'_>, mutex: &'a Mutex<T>) -> PyResult<MutexGuard<'a, T>> {
    mutex
        .lock_py_attached(py)
        .map_err(|_| PyRuntimeError::new_err("an earlier call on this object panicked"))
}

// ---------------------------------------------------------------------------------------------
// Naming

#[pyfunction]
fn container_name(job_id: &str) -> Result<String, NamingError> {
    naming::container_name(job_id)
}

/// How many names are derived per slice: each slice's inputs, buffer and names stay cache-hot.
const BULK_SLICE: usize = 2048;
/// From this many inputs on, a second thread derives the names (a thread costs tens of microseconds).
const PARALLEL_AT: usize = 8 * BULK_SLICE;

/// Derives one name per `str` of `seq` (any iterable but a `str`), slice by slice: the slice's items
/// are taken, each held by a reference so that Rust can borrow its (immutable) text with the GIL
/// released, `derive` appends their names (indices counted from the slice's start) to a buffer without
/// the GIL, and they become Python strings in the list, while all of it is still in the cache. From
/// [`PARALLEL_AT`] items on, a second thread derives each slice while this one takes the next and makes
/// the strings of the last, and derives a slice itself rather than wait long for one (see
/// [`Pipeline`]). A sequence whose size changes meanwhile (another thread) is a `RuntimeError`; an
/// error is the first one in the items' order.
fn bulk<'py, F>(
    py: Python<'py>,
    what: &str,
    seq: &Bound<'py, PyAny>,
    derive: F,
) -> PyResult<Bound<'py, PyList>>
where
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), NamingError> + Sync,
{
    if seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence of str, not a single str"
        )));
    }
    let owned; // an iterable without a length, as a list
    let seq = match seq.len() {
        Ok(_) => seq,
        Err(_) => {
            owned = py.get_type::<PyList>().call1((seq,))?;
            &owned
        }
    };
    let len = seq.len()?;
    let changed = || PyRuntimeError::new_err(format!("{what} changed size while it was read"));
    let list = list_of_len(py, len)?;
    let mut items = seq.try_iter()?;
    // The items of slice `n`, exactly as many as the length said.
    let mut take = |n: usize| -> PyResult<Vec<Bound<'py, PyString>>> {
        let first = n * BULK_SLICE;
        let count = len.saturating_sub(first).min(BULK_SLICE);
        let mut slice = Vec::with_capacity(count);
        for item in items.by_ref().take(count) {
            slice.push(str_item(what, first + slice.len(), item?)?);
        }
        if slice.len() == count {
            Ok(slice)
        } else {
            Err(changed())
        }
    };
    let slices = len.div_ceil(BULK_SLICE);
    if len < PARALLEL_AT {
        let mut buf = StrList::default();
        for n in 0..slices {
            let slice = take(n)?;
            buf.clear();
            let texts = texts(&slice)?;
            py.detach(|| derive(&texts, n * BULK_SLICE, &mut buf))?;
            set_names(&list, n * BULK_SLICE, slice.len(), &buf)?;
        }
    } else {
        let held: Vec<OnceCell<Vec<Bound<'py, PyString>>>> =
            (0..slices).map(|_| OnceCell::new()).collect();
        let pipeline = Pipeline::new(slices);
        // Takes slice `n` and hands its texts to the helper.
        let mut hand_over = |n: usize| -> PyResult<()> {
            let _ = held[n].set(take(n)?);
            let texts = texts(held[n].get().map_or(&[], Vec::as_slice))?;
            let _ = pipeline.texts[n].set(texts);
            pipeline.signal();
            Ok(())
        };
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new().name("batchfiles-naming".into());
            let spawned = helper.spawn_scoped(scope, || {
                let _gone = HelperGone(&pipeline); // also if deriving panicked: no one waits for it
                while let Some(n) = pipeline.claim() {
                    let Some(texts) = pipeline.wait_texts(n) else {
                        return;
                    };
                    let derived = derive_slice(&derive, texts, n);
                    let failed = derived.is_err();
                    pipeline.finish(n, derived);
                    if failed {
                        return;
                    }
                }
            });
            if spawned.is_err() {
                // No thread to be had (a limit reached): this one derives every slice itself.
                pipeline.helper_gone.store(true, Ordering::Release);
            }
            let result = (|| -> PyResult<()> {
                let mut handed = 0;
                for (n, slice) in held.iter().enumerate() {
                    while handed < slices && handed <= n + 2 {
                        hand_over(handed)?;
                        handed += 1;
                    }
                    // Rather than wait long for slice n, derive the next slice no thread has claimed.
                    let derived = loop {
                        if let Some(derived) = pipeline.spin_done(n, SPIN_BEFORE_CLAIM) {
                            break derived;
                        }
                        let Some(m) = pipeline.claim() else {
                            break match py.detach(|| pipeline.wait_done(n)) {
                                Some(derived) => derived,
                                // The helper died before deriving it: derive it here.
                                None => {
                                    py.detach(|| derive_slice(&derive, pipeline.texts_of(n), n))
                                }
                            };
                        };
                        while handed < slices && handed <= m + 2 {
                            hand_over(handed)?; // and the helper's next ones
                            handed += 1;
                        }
                        let derived = py.detach(|| derive_slice(&derive, pipeline.texts_of(m), m));
                        pipeline.finish(m, derived);
                    };
                    let count = slice.get().map_or(0, Vec::len);
                    set_names(&list, n * BULK_SLICE, count, &derived?)?;
                }
                Ok(())
            })();
            pipeline.stop();
            result
        })?;
    }
    if items.next().is_some() {
        return Err(changed());
    }
    Ok(list)
}

/// The names of slice `n`, whose texts are `texts`.
fn derive_slice<F>(derive: &F, texts: &[&str], n: usize) -> Result<StrList, NamingError>
where
    F: Fn(&[&str], usize, &mut StrList) -> Result<(), NamingError>,
{
    let mut buf = StrList::with_capacity(texts.len(), 48);
    derive(texts, n * BULK_SLICE, &mut buf).map(|()| buf)
}

/// The UTF-8 text of each item (for ASCII strings, Python's own buffer: no copy).
fn texts<'a>(items: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    items.iter().map(|item| item.to_str()).collect()
}

/// How long a thread of a parallel [`bulk`] call spins before it sleeps, waiting for the other.
const SPIN: Duration = Duration::from_micros(200);
/// How long the caller's thread of a parallel [`bulk`] call waits for the helper's slice before it
/// derives one itself (a slice takes 100-300 us to derive).
const SPIN_BEFORE_CLAIM: Duration = Duration::from_micros(40);

/// The slices of a parallel [`bulk`] call between the caller's thread, which takes each slice's items,
/// hands over their texts and makes the names' strings, and the helper, which derives the names and
/// hands them back. Either thread claims the next slice to derive from one counter: the helper one
/// after another, the caller's thread when the slice it needs is not ready soon.
struct Pipeline<'a> {
    texts: Vec<OnceLock<Vec<&'a str>>>,
    /// The next slice no thread has claimed to derive.
    next: AtomicUsize,
    done: Vec<Mutex<Option<Result<StrList, NamingError>>>>,
    /// The caller's thread is done (finished or failed): the helper stops.
    stopped: AtomicBool,
    /// The helper ended.
    helper_gone: AtomicBool,
    /// Signalled whenever one of the above changes.
    changed: (Mutex<()>, Condvar),
}

impl<'a> Pipeline<'a> {
    fn new(slices: usize) -> Self {
        Self {
            texts: (0..slices).map(|_| OnceLock::new()).collect(),
            next: AtomicUsize::new(0),
            done: (0..slices).map(|_| Mutex::new(None)).collect(),
            stopped: AtomicBool::new(false),
            helper_gone: AtomicBool::new(false),
            changed: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Wakes the other thread (taking the lock first, so that a waiter either sees the change or is
    /// already waiting).
    fn signal(&self) {
        drop(self.changed.0.lock());
        self.changed.1.notify_all();
    }

    /// Waits until `ready` or the other side is gone (`gone`); `ready`'s value, if it came.
    fn wait_for<T>(&self, gone: &AtomicBool, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        // Spin a little first: the other thread is usually about to hand it over, and waking a thread
        // from a condition variable takes longer than a slice on a busy machine.
        let spin_until = Instant::now() + SPIN;
        while Instant::now() < spin_until {
            for _ in 0..64 {
                if let Some(value) = ready() {
                    return Some(value);
                }
                std::hint::spin_loop();
            }
        }
        let mut guard = self.changed.0.lock().ok()?;
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            if gone.load(Ordering::Acquire) {
                return None;
            }
            guard = self.changed.1.wait(guard).ok()?;
        }
    }

    /// Either thread: the next slice to derive, now this thread's; None when all are claimed.
    fn claim(&self) -> Option<usize> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.texts.len()).then_some(n)
    }

    /// In the caller's thread: the texts of slice `n`, handed over before.
    fn texts_of(&self, n: usize) -> &[&'a str] {
        self.texts[n].get().map_or(&[], Vec::as_slice)
    }

    /// In the caller's thread: the names of slice `n` if derived already.
    fn take_done(&self, n: usize) -> Option<Result<StrList, NamingError>> {
        self.done[n].lock().ok()?.take()
    }

    /// In the caller's thread: the names of slice `n` if derived within `spin` (at once if the helper
    /// is gone).
    fn spin_done(&self, n: usize, spin: Duration) -> Option<Result<StrList, NamingError>> {
        if self.helper_gone.load(Ordering::Acquire) {
            return self.take_done(n);
        }
        let until = Instant::now() + spin;
        loop {
            if let Some(derived) = self.take_done(n) {
                return Some(derived);
            }
            if Instant::now() >= until {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// In the helper: the texts of slice `n` once handed over; None once the caller stopped.
    fn wait_texts(&self, n: usize) -> Option<&[&'a str]> {
        self.wait_for(&self.stopped, || self.texts[n].get().map(Vec::as_slice))
    }

    /// In the helper: hands back the names of slice `n`.
    fn finish(&self, n: usize, derived: Result<StrList, NamingError>) {
        if let Ok(mut done) = self.done[n].lock() {
            *done = Some(derived);
        }
        self.signal();
    }

    /// In the caller's thread: the names of slice `n` once derived; None if the helper ended first.
    fn wait_done(&self, n: usize) -> Option<Result<StrList, NamingError>> {
        self.wait_for(&self.helper_gone, || self.take_done(n))
    }

    /// In the caller's thread: done, the helper stops.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.signal();
    }
}

/// Marks the helper thread of [`bulk`] gone when dropped, and wakes the caller's thread.
struct HelperGone<'p, 'a>(&'p Pipeline<'a>);

impl Drop for HelperGone<'_, '_> {
    fn drop(&mut self) {
        self.0.helper_gone.store(true, Ordering::Release);
        self.0.signal();
    }
}

/// `item` as a `str`, else a `TypeError` naming it as `what[index]`.
fn str_item<'py>(
    what: &str,
    index: usize,
    item: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    item.cast_into::<PyString>().map_err(|err| {
        let type_name = err.into_inner().get_type().name().map(|n| n.to_string());
        PyTypeError::new_err(format!(
            "{what}[{index}] must be a str, not {}",
            type_name.unwrap_or_default()
        ))
    })
}

/// A new list of `len` items, all unset (NULL): every one must be set before Python sees it. Dropped
/// unfinished (an error), it is freed like any list (its unset items are skipped).
fn list_of_len(py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyList>> {
    let len = ffi::Py_ssize_t::try_from(len).map_err(|e| PyValueError::new_err(e.to_string()))?;
    // SAFETY: `PyList_New` returns a new reference, or NULL with an exception set.
    let list = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyList_New(len)) }?;
    Ok(list.cast_into::<PyList>()?)
}

/// Sets the items `first..first + count` of `list` (made by [`list_of_len`]) to the strings of `names`.
fn set_names(
    list: &Bound<'_, PyList>,
    first: usize,
    count: usize,
    names: &StrList,
) -> PyResult<()> {
    if names.len() != count {
        return Err(PyRuntimeError::new_err("a bulk name is missing"));
    }
    for (i, name) in names.iter().enumerate() {
        list.set_item(first + i, PyString::new(list.py(), name))?;
    }
    Ok(())
}

#[pyfunction]
fn container_names<'py>(
    py: Python<'py>,
    job_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    bulk(py, "job_ids", job_ids, naming::container_names)
}

#[pyfunction]
#[pyo3(signature = (kind, task_id=None))]
fn blob_prefix(kind: &str, task_id: Option<&str>) -> Result<String, NamingError> {
    naming::blob_prefix(kind, task_id)
}

#[pyfunction]
#[pyo3(signature = (kind, path, task_id=None))]
fn blob_name(kind: &str, path: &str, task_id: Option<&str>) -> Result<String, NamingError> {
    naming::blob_name(kind, path, task_id)
}

#[pyfunction]
#[pyo3(signature = (kind, paths, task_id=None))]
fn blob_names<'py>(
    py: Python<'py>,
    kind: &str,
    paths: &Bound<'py, PyAny>,
    task_id: Option<&str>,
) -> PyResult<Bound<'py, PyList>> {
    bulk(py, "paths", paths, |slice, first, out| {
        naming::blob_names(kind, slice, task_id, first, out)
    })
}

#[pyfunction]
fn destination_path(relative_path: &str) -> Result<String, NamingError> {
    naming::destination_path(relative_path)
}

#[pyfunction]
fn file_path(blob_name: &str) -> Result<String, NamingError> {
    naming::file_path(blob_name)
}

#[pyfunction]
#[pyo3(signature = (blob_name, task_id=None))]
fn parse_output_name<'a>(
    blob_name: &'a str,
    task_id: Option<&str>,
) -> Result<(&'a str, &'a str), NamingError> {
    naming::parse_output_name(blob_name, task_id)
}

#[pyfunction]
fn path_problem(path: &str) -> Option<&'static str> {
    naming::path_problem(path)
}

#[pyfunction]
fn validate_task_id(task_id: &str) -> Result<(), NamingError> {
    naming::validate_task_id(task_id)
}

#[pyfunction]
fn validate_kind(kind: &str) -> Result<(), NamingError> {
    naming::validate_kind(kind)
}

// ---------------------------------------------------------------------------------------------
// Hashing

/// Buffers at least this long are hashed with the GIL released; shorter ones are not worth it.
const DETACH_AT: usize = 64 * 1024;

/// A bytes-like argument, as a `bytes` object: a `bytes` itself (immutable, kept alive by the
/// argument), any other buffer (bytearray, memoryview, mmap, array, ...) copied with
/// `memoryview(obj).tobytes()` while the GIL is held. Either way no Python thread can change the
/// bytes while the GIL is released. (abi3-py310 has no buffer API, so no `PyBuffer`.)
struct Data<'py>(Bound<'py, PyBytes>);

impl<'a, 'py> FromPyObject<'a, 'py> for Data<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(Self(bytes.to_owned()));
        }
        let copy = PyMemoryView::from(&obj)?.call_method0("tobytes")?;
        Ok(Self(copy.cast_into::<PyBytes>()?))
    }
}

impl Data<'_> {
    /// `f` of the bytes, computed with the GIL released when they are many.
    fn with<T: Send>(&self, f: impl Send + FnOnce(&[u8]) -> T) -> T {
        let data = self.0.as_bytes();
        if data.len() >= DETACH_AT {
            self.0.py().detach(|| f(data))
        } else {
            f(data)
        }
    }
}

/// MD5 digest (16 bytes) of a bytes-like object.
#[pyfunction]
fn md5(data: Data<'_>) -> [u8; 16] {
    data.with(checksum::md5)
}

/// The `x-ms-content-crc64` header of a bytes-like object: base64 of its CRC-64/NVME, little-endian.
#[pyfunction]
fn crc64_header(data: Data<'_>) -> String {
    checksum::crc64_header(data.with(checksum::crc64))
}

/// Streaming MD5: `update` with each chunk, `digest` at any time.
#[pyclass(frozen, module = "batchfiles._native", name = "Md5")]
struct Md5(Mutex<checksum::Md5>);

#[pymethods]
impl Md5 {
    #[new]
    fn new() -> Self {
        Self(Mutex::default())
    }

    /// Feeds a bytes-like object.
    fn update(&self, py: Python<'_>, data: Data<'_>) -> PyResult<()> {
        let mut guard = lock(py, &self.0)?;
        let md5 = &mut *guard;
        data.with(|bytes| md5.update(bytes));
        Ok(())
    }

    /// The 16-byte digest of everything fed so far; further updates may follow.
    fn digest(&self, py: Python<'_>) -> PyResult<[u8; 16]> {
        Ok(lock(py, &self.0)?.finish())
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a file in blocks

/// Largest block: 4000 MiB, Azure's Put Block limit.
const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;

/// One block read by [`BlockReader::next_block`]: index, offset, data, CRC-64 header.
type ReadBlock<'py> = (u64, u64, Bound<'py, PyBytes>, String);

/// Reads a file in blocks for Put Block: each block with its CRC-64 header, and the whole
/// file's MD5. Fails rather than return a partial file if the file shrinks or grows.
/// A thin wrapper over [`chunk::BlockReader`], which reads each block into a fresh `bytes`.
#[pyclass(frozen, module = "batchfiles._native", name = "BlockReader")]
struct BlockReader {
    path: PathBuf,
    size: u64,
    identity: Option<(u64, u64)>,
    blocks: Mutex<chunk::BlockReader>,
}

#[pymethods]
impl BlockReader {
    #[new]
    #[pyo3(signature = (path, block_size, *, md5 = true))]
    fn new(py: Python<'_>, path: PathBuf, block_size: i64, md5: bool) -> PyResult<Self> {
        let block_size = count("block_size", block_size, 1..=MAX_BLOCK_SIZE)?;
        let block_size = usize::try_from(block_size)
            .map_err(|_| PyValueError::new_err("block_size does not fit in memory"))?;
        let blocks = py
            .detach(|| chunk::BlockReader::open(&path, block_size, md5))
            .map_err(|e| os_error(e, &path))?;
        Ok(Self {
            path,
            size: blocks.size(),
            identity: blocks.identity(),
            blocks: Mutex::new(blocks),
        })
    }

    /// The file's size when it was opened.
    #[getter]
    fn size(&self) -> u64 {
        self.size
    }

    /// (device, inode) of the file opened (Unix; `None` elsewhere).
    #[getter]
    fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Bytes returned in blocks so far.
    #[getter]
    fn bytes_read(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(lock(py, &self.blocks)?.bytes_read())
    }

    /// `(index, offset, data, crc64_header)` of the next block, or None after the last one.
    fn next_block<'py>(&self, py: Python<'py>) -> PyResult<Option<ReadBlock<'py>>> {
        let mut guard = lock(py, &self.blocks)?;
        let blocks = &mut *guard;
        let mut block = None;
        // SOUNDNESS: `buf` is the memory of a new bytes object that no other code can reach
        // until `new_with` returns it, so writing it without the GIL races with nothing. It is the
        // block's exact length (the lock keeps `next_len` fixed until the read); a length of 0 may
        // be CPython's shared empty `bytes`, but then nothing is written.
        let data = PyBytes::new_with(py, blocks.next_len(), |buf| {
            block = py
                .detach(|| blocks.next_block(buf))
                .map_err(|e| os_error(e, &self.path))?;
            Ok(())
        })?;
        Ok(block.map(|b| (b.index, b.offset, data, checksum::crc64_header(b.crc64))))
    }

    /// The whole file's MD5 once the last block was returned; None before that or without md5.
    fn md5(&self, py: Python<'_>) -> PyResult<Option<[u8; 16]>> {
        Ok(lock(py, &self.blocks)?.md5())
    }
}

// ---------------------------------------------------------------------------------------------
// Tracking a growing file

/// What [`Tracker::poll`] returns: the block as (data, crc64 header, file offset), the events,
/// and whether more is ready.
type Polled<'py> = (
    Option<(Bound<'py, PyBytes>, String, u64)>,
    Vec<(&'static str, u64)>,
    bool,
);

/// A tracker's block, read straight into a Python `bytes` (filled with the GIL released): the
/// bytes are copied once, by the kernel, and a poll hands out that very object, again until it is
/// committed.
struct PyBlock {
    bytes: Py<PyBytes>,
    /// Its buffer and length: a `bytes` never changes nor moves, and `bytes` keeps it alive.
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr` points into the immutable `bytes` owned by the block, so it may be read from any
// thread, and by several at once, while the block lives; `Py<PyBytes>` itself is `Send + Sync`.
unsafe impl Send for PyBlock {}
unsafe impl Sync for PyBlock {}

impl BlockData for PyBlock {
    fn read(
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize> + Send,
    ) -> io::Result<Self> {
        // Called by the tracker with the GIL released (`Tracker::poll`): taken for the allocation
        // only, and released again while `fill` reads into the new object.
        Python::attach(|py| {
            let size = ffi::Py_ssize_t::try_from(len).map_err(io::Error::other)?;
            // SAFETY: with a NULL source, `PyBytes_FromStringAndSize` returns a new reference to a
            // new bytes object of `size` bytes, not initialised (no zero-filling), or NULL with an
            // exception set.
            let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
            // SAFETY: `raw` is an owned reference or NULL.
            let new = unsafe { Bound::from_owned_ptr_or_err(py, raw) }.map_err(io::Error::other)?;
            // SAFETY: the buffer of the new object, `len` bytes. No other code can reach the object
            // until this returns it, so writing it without the GIL races with nothing; of it, only
            // the bytes `fill` wrote are read.
            let buf = unsafe {
                let data = ffi::PyBytes_AsString(new.as_ptr()).cast::<MaybeUninit<u8>>();
                std::slice::from_raw_parts_mut(data, len)
            };
            let filled = py.detach(|| fill(buf))?.min(len);
            let bytes = if filled < len {
                // The file ended early (it shrank since its size was seen): the bytes read only.
                // SAFETY: `fill` wrote the first `filled` bytes.
                let read = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), filled) };
                PyBytes::new(py, read)
            } else {
                new.cast_into::<PyBytes>()
                    .map_err(|e| io::Error::other(e.to_string()))?
            };
            let data = bytes.as_bytes();
            let (ptr, len) = (data.as_ptr(), data.len());
            Ok(Self {
                bytes: bytes.unbind(),
                ptr,
                len,
            })
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: see `PyBlock::ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Follows a growing file like `tail -F`, cutting its new bytes into append blocks.
#[pyclass(frozen, module = "batchfiles._native", name = "Tracker")]
struct Tracker {
    path: PathBuf,
    tracker: Mutex<track::Tracker<PyBlock>>,
}

#[pymethods]
impl Tracker {
    #[new]
    #[pyo3(signature = (path, start_offset = 0, max_block = track::DEFAULT_MAX_BLOCK as i64))]
    fn new(py: Python<'_>, path: PathBuf, start_offset: i64, max_block: i64) -> PyResult<Self> {
        let start_offset = count("start_offset", start_offset, 0..=u64::MAX)?;
        let max_block = count("max_block", max_block, 1..=track::MAX_BLOCK_LIMIT as u64)? as usize;
        let tracker = py
            .detach(|| track::Tracker::with_blocks(path.clone(), start_offset, max_block))
            .map_err(|e| os_error(e, &path))?;
        Ok(Self {
            path,
            tracker: Mutex::new(tracker),
        })
    }

    /// `(block, events, more)`: the pending block as `(data, crc64_header, file_offset)` or None,
    /// the `(name, value)` events since the last poll, and whether another block is ready.
    #[pyo3(signature = (min_bytes = 0))]
    fn poll<'py>(&self, py: Python<'py>, min_bytes: i64) -> PyResult<Polled<'py>> {
        let min_bytes = count("min_bytes", min_bytes, 0..=u64::MAX)?;
        let min_bytes = usize::try_from(min_bytes).unwrap_or(usize::MAX);
        let mut guard = lock(py, &self.tracker)?;
        let tracker = &mut *guard;
        let found = py
            .detach(|| tracker.poll(min_bytes))
            .map_err(|e| os_error(e, &self.path))?;
        let block = found.block.map(|block| {
            let data = block.data.bytes.bind(py).clone();
            (data, checksum::crc64_header(block.crc64), block.file_offset)
        });
        let events = found.events.iter().map(event_item).collect();
        Ok((block, events, found.more))
    }

    /// Marks the pending block as saved; returns its length (0 if none was pending).
    fn commit(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(lock(py, &self.tracker)?.commit())
    }

    /// Up to `length` bytes at `offset` of the file being read (fewer at its end).
    fn read_range(&self, py: Python<'_>, offset: i64, length: i64) -> PyResult<Vec<u8>> {
        let offset = count("offset", offset, 0..=u64::MAX)?;
        let length = count("length", length, 0..=u64::MAX)?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        let guard = lock(py, &self.tracker)?;
        let tracker = &*guard;
        py.detach(|| tracker.read_range(offset, length))
            .map_err(|e| os_error(e, &self.path))
    }

    /// Changes seen since the tracker was created: a file that grew, shrank or was rewritten, or a
    /// new file at the path. Counted by polls; the file found at the start is none.
    #[getter]
    fn changes(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(lock(py, &self.tracker)?.stats().changes)
    }

    /// Committed bytes of the file being read: the `start_offset` to resume with.
    #[getter]
    fn offset(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(lock(py, &self.tracker)?.offset())
    }
}

fn event_item(event: &Event) -> (&'static str, u64) {
    match *event {
        Event::Opened { offset } => ("opened", offset),
        Event::Rotated { unread } => ("rotated", unread),
        Event::Deleted { unread } => ("deleted", unread),
        Event::Truncated { lost } => ("truncated", lost),
        Event::Skipped { lost } => ("skipped", lost),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(container_name, m)?)?;
    m.add_function(wrap_pyfunction!(container_names, m)?)?;
    m.add_function(wrap_pyfunction!(blob_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(blob_name, m)?)?;
    m.add_function(wrap_pyfunction!(blob_names, m)?)?;
    m.add_function(wrap_pyfunction!(destination_path, m)?)?;
    m.add_function(wrap_pyfunction!(file_path, m)?)?;
    m.add_function(wrap_pyfunction!(parse_output_name, m)?)?;
    m.add_function(wrap_pyfunction!(path_problem, m)?)?;
    m.add_function(wrap_pyfunction!(validate_task_id, m)?)?;
    m.add_function(wrap_pyfunction!(validate_kind, m)?)?;
    m.add_function(wrap_pyfunction!(self::md5, m)?)?; // `self::`: the md-5 dev-dependency is `md5` too
    m.add_function(wrap_pyfunction!(crc64_header, m)?)?;
    m.add_class::<Md5>()?;
    m.add_class::<BlockReader>()?;
    m.add_class::<Tracker>()?;
    test_support::add_to(m)
}
