//! The PyO3 layer: thin wrappers over the pure Rust modules. Long work runs with the GIL released.
//! This file holds what the library calls: a tracker's and a `BlockReader`'s blocks are made as Python
//! `bytes` in `py/block.rs`, and a bulk call's names are derived by the pipeline of `bulk.rs`, fed here
//! through its `Caller`; `py/test_support.rs` holds what only tests and benchmarks call.
//!
//! The classes are `frozen` and keep their state behind a `Mutex` taken with `lock_py_attached`:
//! calls from several Python threads run one at a time, a waiting thread not holding the GIL.

use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyIterator, PyList, PyMemoryView, PyString};

use crate::bulk;
use crate::checksum;
use crate::chunk;
use crate::naming::{self, NamingError, StrList};
use crate::track::{self, Event};

use block::PyBlock;

mod block;
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

/// Derives one name per `str` of `seq` (any iterable but a `str`) with [`bulk::run`]: the binding
/// takes the items (each held by a reference, so that Rust can borrow its immutable text with the GIL
/// released) and makes the names' strings. A sequence whose size changes meanwhile (another thread)
/// is a `RuntimeError`.
fn bulk<'py, F>(
    py: Python<'py>,
    what: &'static str,
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
    let mut names = Names {
        what,
        items: seq.try_iter()?,
        names: Vec::with_capacity(len),
    };
    bulk::run(&mut names, len, derive)?;
    if names.items.next().is_some() {
        return Err(changed_size(what));
    }
    PyList::new(py, names.names)
}

/// The Python side of a [`bulk`] call: `str` items in, `str` names out.
struct Names<'py> {
    what: &'static str,
    items: Bound<'py, PyIterator>,
    names: Vec<Bound<'py, PyString>>,
}

impl<'py> bulk::Caller for Names<'py> {
    type Item = Bound<'py, PyString>;
    type Error = PyErr;

    fn take(&mut self, index: usize) -> PyResult<Self::Item> {
        let item = self.items.next().ok_or_else(|| changed_size(self.what))??;
        item.cast_into::<PyString>().map_err(|err| {
            let type_name = err.into_inner().get_type().name().map(|n| n.to_string());
            PyTypeError::new_err(format!(
                "{}[{index}] must be a str, not {}",
                self.what,
                type_name.unwrap_or_default()
            ))
        })
    }

    /// The UTF-8 text (for an ASCII string, Python's own buffer: no copy).
    fn text<'i>(&self, item: &'i Self::Item) -> PyResult<&'i str> {
        item.to_str()
    }

    fn put(&mut self, _index: usize, name: &str) -> PyResult<()> {
        self.names.push(PyString::new(self.items.py(), name));
        Ok(())
    }

    fn detach<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.items.py().detach(f)
    }
}

/// The error of an iterable that yields more or fewer items than its length said.
fn changed_size(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!("{what} changed size while it was read"))
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
    identity: Option<crate::fileid::FileId>,
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

    /// Which file was opened: (device, inode) on Unix, (volume serial number, file index) on
    /// Windows, as `os.stat` gives them (see [`crate::fileid::FileId`]).
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
        let len = blocks.next_len(); // fixed until the read: the lock is held
        let mut block = None;
        let data = block::new_bytes_with(py, len, |buf| {
            block = blocks.next_block_uninit(buf)?;
            Ok(block.map_or(0, |b| b.len))
        })
        .map_err(|e| os_error(e, &self.path))?;
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
            let data = block.data.to_bytes(py);
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

/// The `[package]` version of Cargo.toml this extension was built from: `batchfiles.__version__`,
/// and the version maturin writes into the wheel's metadata (a plain `X.Y.Z` reads the same in both).
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
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
