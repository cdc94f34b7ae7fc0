//! Azure Batch File Conventions: container names, blob names and path normalisation.
//!
//! Pure Rust, no Python: every function returns `Result<_, NamingError>` and never panics.

use sha1::{Digest, Sha1};
use std::fmt;

/// Longest job id the Batch service accepts.
pub const MAX_JOB_ID_LEN: usize = 128;
/// Longest task id the Batch service accepts.
pub const MAX_TASK_ID_LEN: usize = 64;
/// Longest blob name Azure Storage accepts, in characters.
pub const MAX_BLOB_NAME_LEN: usize = 1024;
/// Most `/`-separated segments Azure Storage accepts in a blob name.
pub const MAX_BLOB_SEGMENTS: usize = 254;

/// Longest lowercased job id used as it is (`job-` + 59 = 63, the container name limit).
const MAX_PLAIN_ID_LEN: usize = 59;
/// How much of the sanitised job id is kept in front of the SHA-1 in a hashed container name.
const HASHED_PREFIX_LEN: usize = 15;

/// Why a name could not be derived. The message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamingError {
    InvalidJobId(String),
    InvalidTaskId(String),
    InvalidKind(String),
    InvalidPath(String),
}

impl fmt::Display for NamingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJobId(m)
            | Self::InvalidTaskId(m)
            | Self::InvalidKind(m)
            | Self::InvalidPath(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for NamingError {}

/// Describes a character for an error message: printable ones quoted, others as `U+XXXX`.
fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("{c:?}")
    }
}

fn check_id(
    what: &str,
    id: &str,
    max_len: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if let Some((i, c)) = id.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(format!(
            "{what} {id:?} has an invalid character {} at position {i}",
            describe(c)
        ));
    }
    if id.len() > max_len {
        return Err(format!(
            "{what} is {} characters long; at most {max_len} are allowed",
            id.len()
        ));
    }
    Ok(())
}

/// Checks a Batch job id: 1–128 ASCII letters, digits, `-`, `_` and `:`.
pub fn validate_job_id(job_id: &str) -> Result<(), NamingError> {
    check_id("job id", job_id, MAX_JOB_ID_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')
    })
    .map_err(NamingError::InvalidJobId)
}

/// Checks a Batch task id: 1–64 ASCII letters, digits, `-` and `_`.
pub fn validate_task_id(task_id: &str) -> Result<(), NamingError> {
    check_id("task id", task_id, MAX_TASK_ID_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
    })
    .map_err(NamingError::InvalidTaskId)
}

/// Checks the text of an output kind (built-in or custom).
pub fn validate_kind(kind: &str) -> Result<(), NamingError> {
    let err = |why: String| {
        Err(NamingError::InvalidKind(format!(
            "output kind {kind:?} {why}"
        )))
    };
    if kind.is_empty() {
        return Err(NamingError::InvalidKind(
            "output kind must not be empty".into(),
        ));
    }
    if kind == "." || kind == ".." {
        return err("is not a valid path segment".into());
    }
    if kind.starts_with('$') {
        return err("must not start with '$' (it is added by the conventions)".into());
    }
    if let Some(c) = kind
        .chars()
        .find(|&c| c == '/' || c == '\\' || c.is_control())
    {
        return err(format!("has an invalid character {}", describe(c)));
    }
    Ok(())
}

/// Is `name` usable as it is after `job-`: `^[a-z0-9][-a-z0-9]*$`, no trailing `-`, no `--`?
fn is_plain_container_id(lower: &str) -> bool {
    let bytes = lower.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PLAIN_ID_LEN
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !lower.contains("--")
}

/// The container name of a job's outputs, as the Batch File Conventions define it.
pub fn container_name(job_id: &str) -> Result<String, NamingError> {
    validate_job_id(job_id)?;
    let lower = job_id.to_ascii_lowercase();
    if is_plain_container_id(&lower) {
        return Ok(format!("job-{lower}"));
    }
    // Runs of ':', '_' and '-' become one '-', then trim, cut and trim again.
    let mut safe = String::with_capacity(lower.len());
    for c in lower.chars() {
        if matches!(c, ':' | '_' | '-') {
            if !safe.ends_with('-') {
                safe.push('-');
            }
        } else {
            safe.push(c);
        }
    }
    let safe = safe.trim_matches('-');
    // All ASCII here, so byte slicing is character slicing.
    let cut = safe[..safe.len().min(HASHED_PREFIX_LEN)].trim_matches('-');
    let cut = if cut.is_empty() { "job" } else { cut };
    let digest = Sha1::digest(lower.as_bytes());
    let mut name = String::with_capacity(4 + cut.len() + 1 + 40);
    name.push_str("job-");
    name.push_str(cut);
    name.push('-');
    for b in digest {
        name.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        name.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    Ok(name)
}

/// The prefix of every blob of `kind`: `$Kind` for a job, `{task_id}/$Kind` for a task.
pub fn blob_prefix(kind: &str, task_id: Option<&str>) -> Result<String, NamingError> {
    validate_kind(kind)?;
    match task_id {
        Some(task) => {
            validate_task_id(task)?;
            Ok(format!("{task}/${kind}"))
        }
        None => Ok(format!("${kind}")),
    }
}

/// Is `path` absolute on POSIX or Windows (`/x`, `\x`, `C:`, `C:\x`, `C:/x`)?
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    matches!(b.first(), Some(b'/' | b'\\'))
        || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

/// The blob-relative path a local relative path is saved under.
///
/// `\` and `/` both separate; `.` and empty segments vanish; `..` removes the segment before it and is
/// dropped where there is none, so the result never climbs out of its prefix.
pub fn destination_path(path: &str) -> Result<String, NamingError> {
    let invalid = |why: &str| Err(NamingError::InvalidPath(format!("path {path:?} {why}")));
    if path.is_empty() {
        return invalid("is empty");
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return invalid(&format!("has a control character {}", describe(c)));
    }
    if is_absolute(path) {
        return invalid("is absolute; give a relative path or a destination");
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        return invalid("names no file once '.' and '..' are resolved");
    }
    Ok(parts.join("/"))
}

/// The full blob name of `path` saved as `kind` (of `task_id`, or of the job).
pub fn blob_name(kind: &str, path: &str, task_id: Option<&str>) -> Result<String, NamingError> {
    let prefix = blob_prefix(kind, task_id)?;
    join_checked(&prefix, path)
}

/// Bulk [`blob_name`]: the prefix is derived once; an error names the index of the bad path.
pub fn blob_names(
    kind: &str,
    paths: &[String],
    task_id: Option<&str>,
) -> Result<Vec<String>, NamingError> {
    let prefix = blob_prefix(kind, task_id)?;
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| join_checked(&prefix, p).map_err(|e| at_index(e, "paths", i)))
        .collect()
}

/// Bulk [`container_name`]; an error names the index of the bad id.
pub fn container_names(job_ids: &[String]) -> Result<Vec<String>, NamingError> {
    job_ids
        .iter()
        .enumerate()
        .map(|(i, id)| container_name(id).map_err(|e| at_index(e, "job_ids", i)))
        .collect()
}

fn at_index(err: NamingError, what: &str, i: usize) -> NamingError {
    let wrap = |m: String| format!("{what}[{i}]: {m}");
    match err {
        NamingError::InvalidJobId(m) => NamingError::InvalidJobId(wrap(m)),
        NamingError::InvalidTaskId(m) => NamingError::InvalidTaskId(wrap(m)),
        NamingError::InvalidKind(m) => NamingError::InvalidKind(wrap(m)),
        NamingError::InvalidPath(m) => NamingError::InvalidPath(wrap(m)),
    }
}

fn join_checked(prefix: &str, path: &str) -> Result<String, NamingError> {
    let dest = destination_path(path)?;
    let name = format!("{prefix}/{dest}");
    let chars = name.chars().count();
    if chars > MAX_BLOB_NAME_LEN {
        return Err(NamingError::InvalidPath(format!(
            "blob name for path {path:?} would be {chars} characters long; Azure allows {MAX_BLOB_NAME_LEN}"
        )));
    }
    let segments = name.split('/').count();
    if segments > MAX_BLOB_SEGMENTS {
        return Err(NamingError::InvalidPath(format!(
            "blob name for path {path:?} would have {segments} segments; Azure allows {MAX_BLOB_SEGMENTS}"
        )));
    }
    Ok(name)
}

/// The path of a file under its kind: strips `{task}/$Kind/` or `$Kind/` from a blob name.
pub fn file_path(blob_name: &str) -> Result<String, NamingError> {
    let mut it = blob_name.splitn(3, '/');
    let first = it.next().unwrap_or_default();
    let rest: Option<&str> = if first.starts_with('$') && first.len() > 1 {
        blob_name.split_once('/').map(|(_, r)| r)
    } else {
        match (it.next(), it.next()) {
            (Some(kind), Some(r))
                if kind.starts_with('$') && kind.len() > 1 && !first.is_empty() =>
            {
                Some(r)
            }
            _ => None,
        }
    };
    match rest {
        Some(r) if !r.is_empty() => Ok(r.to_string()),
        _ => Err(NamingError::InvalidPath(format!(
            "blob name {blob_name:?} is not of the form '$Kind/path' or 'task/$Kind/path'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_match_dotnet_vectors() {
        let cases = [
            ("job-15", "job-job-15"),
            ("MyTerrificJob", "job-myterrificjob"),
            (
                "my_job-bob",
                "job-my-job-bob-e04620bc2add214df74e158ba60d24273a0e0927",
            ),
            (
                "-my_job-sam--",
                "job-my-job-sam-47f54d840815af2592a12213db05f8a8277a098d",
            ),
            ("---", "job-job-58b63e273b964039d6ef432a415df3f177c818e5"),
            (":", "job-job-05a79f06cf3f67f726dae68d18a2290f6c9a50c9"),
            (
                "myverylongjobnameallinonewordreallystartingtogetreallysillynow",
                "job-myverylongjobna-a8700e4947d0c8c621e53b24246aa0349d830e41",
            ),
        ];
        for (id, want) in cases {
            assert_eq!(container_name(id).unwrap(), want, "{id}");
        }
    }

    #[test]
    fn invalid_job_ids_are_errors() {
        for id in ["", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(
                matches!(container_name(id), Err(NamingError::InvalidJobId(_))),
                "{id}"
            );
        }
        assert!(container_name(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn error_names_the_character() {
        let err = container_name("ab cd").unwrap_err().to_string();
        assert!(err.contains("U+0020"), "{err}");
        let err = container_name("ab/cd").unwrap_err().to_string();
        assert!(err.contains("'/'"), "{err}");
    }

    #[test]
    fn destination_paths() {
        let ok = [
            ("frame.jpg", "frame.jpg"),
            ("../x", "x"),
            ("../../x", "x"),
            ("..\\..\\x", "x"),
            ("a/../b", "b"),
            ("./a//b/./c", "a/b/c"),
            ("out\\frames\\0001.png", "out/frames/0001.png"),
            ("a/b/../../../c", "c"),
        ];
        for (p, want) in ok {
            assert_eq!(destination_path(p).unwrap(), want, "{p}");
        }
        for p in [
            "", "/x", "\\x", "C:\\x", "C:/x", "c:x", "a\0b", "..", "./.", "a/..", "x\n",
        ] {
            assert!(destination_path(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn prefixes_and_names() {
        assert_eq!(blob_prefix("JobOutput", None).unwrap(), "$JobOutput");
        assert_eq!(blob_prefix("TaskLog", Some("t1")).unwrap(), "t1/$TaskLog");
        assert_eq!(
            blob_name("TaskOutput", "..\\a\\b.txt", Some("Task_1")).unwrap(),
            "Task_1/$TaskOutput/a/b.txt"
        );
        for kind in ["", ".", "..", "$x", "a/b", "a\\b", "a\tb"] {
            assert!(blob_prefix(kind, None).is_err(), "{kind:?}");
        }
        for task in ["", "a:b", "a b", &"t".repeat(65)] {
            assert!(blob_prefix("TaskLog", Some(task)).is_err(), "{task:?}");
        }
    }

    #[test]
    fn blob_name_limits() {
        let long = "a".repeat(1024);
        assert!(blob_name("JobOutput", &long, None).is_err());
        let deep = vec!["a"; 253].join("/");
        assert!(blob_name("JobOutput", &deep, None).is_ok());
        let deeper = vec!["a"; 254].join("/");
        assert!(blob_name("JobOutput", &deeper, None).is_err());
    }

    #[test]
    fn bulk_errors_name_the_index() {
        let ids = vec!["ok".to_string(), "bad id".to_string()];
        let err = container_names(&ids).unwrap_err().to_string();
        assert!(err.starts_with("job_ids[1]: "), "{err}");
        let paths = vec!["a".to_string(), "/abs".to_string()];
        let err = blob_names("TaskOutput", &paths, Some("t"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("paths[1]: "), "{err}");
    }

    #[test]
    fn file_paths() {
        assert_eq!(file_path("$JobOutput/movie.mp4").unwrap(), "movie.mp4");
        assert_eq!(file_path("t/$TaskLog/stdout.txt").unwrap(), "stdout.txt");
        assert_eq!(
            file_path("$JobOutput/how/deep/go.txt").unwrap(),
            "how/deep/go.txt"
        );
        assert_eq!(file_path("t/$TaskLog/$x/y").unwrap(), "$x/y");
        for b in [
            "",
            "movie.mp4",
            "t/x/y",
            "$JobOutput",
            "$JobOutput/",
            "/$TaskLog/x",
            "$/x",
        ] {
            assert!(file_path(b).is_err(), "{b:?}");
        }
    }
}
