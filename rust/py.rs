//! The only PyO3 file: thin wrappers over the pure Rust modules. Long work runs with the GIL released.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::naming::{self, NamingError, StrList};

impl From<NamingError> for PyErr {
    fn from(err: NamingError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

#[pyfunction]
fn container_name(job_id: &str) -> Result<String, NamingError> {
    naming::container_name(job_id)
}

/// The strings of a Python sequence, copied into one buffer so Rust can use them without the GIL.
fn str_list(what: &str, seq: &Bound<'_, PyAny>) -> PyResult<StrList> {
    if seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a sequence of str, not a single str"
        )));
    }
    let mut out = StrList::with_capacity(seq.len().unwrap_or(0), 24);
    for (i, item) in seq.try_iter()?.enumerate() {
        let item = item?;
        let text = item.cast::<PyString>().map_err(|_| {
            let type_name = item.get_type().name().map(|n| n.to_string());
            PyTypeError::new_err(format!(
                "{what}[{i}] must be a str, not {}",
                type_name.unwrap_or_default()
            ))
        })?;
        out.push(text.to_str()?);
    }
    Ok(out)
}

fn to_list<'py>(py: Python<'py>, names: &StrList) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, names.iter())
}

#[pyfunction]
fn container_names<'py>(
    py: Python<'py>,
    job_ids: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let ids = str_list("job_ids", job_ids)?;
    let names = py.detach(|| naming::container_names(&ids))?;
    to_list(py, &names)
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
    let paths = str_list("paths", paths)?;
    let names = py.detach(|| naming::blob_names(kind, &paths, task_id))?;
    to_list(py, &names)
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
