//! The PyO3 layer: thin wrappers over the pure Rust modules. Long work runs with the GIL released.
//! This file holds what the library calls; `py/test_support.rs` what only tests and benchmarks call.
//!
//! The classes are `frozen` and keep their state behind a `Mutex` taken with `lock_py_attached`:
//! calls from several Python threads run one at a time, a waiting thread not holding the GIL.

use std::io;
use std::mem::MaybeUninit;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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

/// Derives one name per `str` of `seq` (any iterable but a `str`), slice by slice: the slice's items
/// are taken, each held by a reference so that Rust can borrow its (immutable) text with the GIL
/// released, `derive` appends their names (indices counted from the slice's start) to a buffer without
/// the GIL, and they become Python strings in the list, while all of it is still in the cache. A
/// sequence whose size changes meanwhile (another thread) is a `RuntimeError`.
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
    let mut slice: Vec<Bound<'py, PyString>> = Vec::with_capacity(BULK_SLICE.min(len));
    let mut buf = StrList::default();
    let mut first = 0;
    loop {
        slice.clear();
        for item in items.by_ref().take(BULK_SLICE) {
            slice.push(str_item(what, first + slice.len(), item?)?);
        }
        if slice.is_empty() {
            break;
        }
        if first + slice.len() > len {
            return Err(changed());
        }
        let texts = slice
            .iter()
            .map(|item| item.to_str())
            .collect::<PyResult<Vec<&str>>>()?;
        buf.clear();
        py.detach(|| derive(&texts, first, &mut buf))?;
        set_names(&list, first, slice.len(), &buf)?;
        first += slice.len();
    }
    if first != len {
        return Err(changed());
    }
    Ok(list)
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
    m.add_class::<Md5>()?;
    m.add_class::<BlockReader>()?;
    m.add_class::<Tracker>()?;
    test_support::add_to(m)
}
