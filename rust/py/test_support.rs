//! `batchfiles._native.test_support`: bindings that only the tests and benchmarks call, kept apart from
//! what the library uses (`py.rs`, `py/block.rs`). Production code never imports this module.

use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict};

use super::{lock, Data, Tracker};
use crate::checksum;
use crate::naming::{self, NamingError};

/// The submodule's name under its parent, and so the one attribute the parent gains.
const NAME: &str = "test_support";

/// CRC-64/NVME of a bytes-like object (the library sends only the header, from the block readers).
#[pyfunction]
fn crc64(data: Data<'_>) -> u64 {
    data.with(checksum::crc64)
}

/// Checks a job id on its own (the library checks it while deriving the container name).
#[pyfunction]
fn validate_job_id(job_id: &str) -> Result<(), NamingError> {
    naming::validate_job_id(job_id)
}

/// A tracker's running totals since it was made.
#[pyfunction]
fn tracker_stats<'py>(tracker: &Bound<'py, Tracker>) -> PyResult<Bound<'py, PyDict>> {
    let py = tracker.py();
    let stats = lock(py, &tracker.get().tracker)?.stats();
    [
        ("bytes_read", stats.bytes_read),
        ("bytes_committed", stats.bytes_committed),
        ("lost_bytes", stats.lost_bytes),
        ("rotations", stats.rotations),
        ("truncations", stats.truncations),
        ("reads", stats.reads),
        ("changes", stats.changes),
    ]
    .into_py_dict(py)
}

/// Adds the submodule to `parent` and to `sys.modules`, so that `import {parent}.test_support` works too
/// (a submodule of an extension module is no package: without the entry only attribute access finds it).
pub(super) fn add_to(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = parent.py();
    let name = format!("{}.{NAME}", parent.name()?);
    let m = PyModule::new(py, &name)?;
    m.add_function(wrap_pyfunction!(crc64, &m)?)?;
    m.add_function(wrap_pyfunction!(validate_job_id, &m)?)?;
    m.add_function(wrap_pyfunction!(tracker_stats, &m)?)?;
    parent.add_submodule(&m)?;
    py.import("sys")?.getattr("modules")?.set_item(name, m)
}
