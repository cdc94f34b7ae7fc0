//! A block read straight into a new Python `bytes` with the GIL released, never zero-filled first (a
//! tracker's, and a save's `BlockReader`'s): the binding's one use of raw CPython calls, kept here
//! with what makes it sound.

use std::io;
use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::track::BlockData;

/// A block of [`crate::track::Tracker`] as a Python `bytes`: the bytes are copied once, by the
/// kernel, and every poll hands out that very object until it is committed. pyo3's
/// [`PyBackedBytes`] lets the tracker read it from any thread.
pub(super) struct PyBlock(PyBackedBytes);

impl PyBlock {
    /// The block's `bytes` object itself (not a copy).
    pub(super) fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let Ok(bytes) = (&self.0).into_pyobject(py);
        bytes
    }
}

impl BlockData for PyBlock {
    fn read(
        len: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize> + Send,
    ) -> io::Result<Self> {
        // Called by the tracker with the GIL released (`Tracker::poll`): taken for the allocation
        // only, and released again while `fill` reads into the new object.
        Python::attach(|py| Ok(Self(new_bytes_with(py, len, fill)?.into())))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A new `bytes` of the bytes `fill` writes into a buffer of `len` (it returns how many), written
/// with the GIL released. Unlike [`PyBytes::new_with`], the buffer is not zero-filled first (a
/// memset as long as the read); a `fill` that writes fewer than `len` bytes costs a copy of them.
pub(super) fn new_bytes_with(
    py: Python<'_>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize> + Send,
) -> io::Result<Bound<'_, PyBytes>> {
    let size = ffi::Py_ssize_t::try_from(len).map_err(io::Error::other)?;
    // SAFETY: with a NULL source, `PyBytes_FromStringAndSize` returns a new reference to a new bytes
    // object of `size` bytes, not initialised, or NULL with an exception set.
    let raw = unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), size) };
    // SAFETY: `raw` is an owned reference or NULL.
    let new = unsafe { Bound::from_owned_ptr_or_err(py, raw) }.map_err(io::Error::other)?;
    let new = new
        .cast_into::<PyBytes>()
        .map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: `PyBytes_AsString` of a bytes object is its buffer of `len` bytes, valid while `new`
    // lives. Only this function holds `new` until it returns it, so writing the buffer without the
    // GIL races with nothing (a length of 0 may be CPython's shared empty `bytes`, but then nothing
    // is written); as `MaybeUninit`, its bytes are not read before they are written.
    let buf = unsafe {
        let data = ffi::PyBytes_AsString(new.as_ptr()).cast::<MaybeUninit<u8>>();
        std::slice::from_raw_parts_mut(data, len)
    };
    let filled = py.detach(|| fill(buf))?.min(len);
    if filled == len {
        return Ok(new);
    }
    // The file ended early (it shrank since its size was seen): a `bytes` of the bytes read only.
    // SAFETY: `fill` wrote the first `filled` bytes (the contract of `BlockData::read`).
    let read = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), filled) };
    Ok(PyBytes::new(py, read))
}
