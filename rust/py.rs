//! The only PyO3 file: thin wrappers over the pure Rust modules. Long work runs with the GIL released.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::naming::{self, NamingError};

impl From<NamingError> for PyErr {
    fn from(err: NamingError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

#[pyfunction]
fn container_name(job_id: &str) -> Result<String, NamingError> {
    naming::container_name(job_id)
}

#[pyfunction]
fn container_names(py: Python<'_>, job_ids: Vec<String>) -> Result<Vec<String>, NamingError> {
    py.detach(|| naming::container_names(&job_ids))
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
fn blob_names(
    py: Python<'_>,
    kind: &str,
    paths: Vec<String>,
    task_id: Option<&str>,
) -> Result<Vec<String>, NamingError> {
    py.detach(|| naming::blob_names(kind, &paths, task_id))
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
fn validate_job_id(job_id: &str) -> Result<(), NamingError> {
    naming::validate_job_id(job_id)
}

#[pyfunction]
fn validate_task_id(task_id: &str) -> Result<(), NamingError> {
    naming::validate_task_id(task_id)
}

#[pyfunction]
fn validate_kind(kind: &str) -> Result<(), NamingError> {
    naming::validate_kind(kind)
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
    m.add_function(wrap_pyfunction!(validate_job_id, m)?)?;
    m.add_function(wrap_pyfunction!(validate_task_id, m)?)?;
    m.add_function(wrap_pyfunction!(validate_kind, m)?)?;
    Ok(())
}
