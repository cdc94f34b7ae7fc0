//! Azure Batch File Conventions: container names, blob names and path normalisation.
//!
//! Pure Rust, no Python: every function returns `Result<_, NamingError>` (or, for [`path_problem`], the
//! reason as text) and never panics.

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

/// Which input of a naming function was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamingInput {
    JobId,
    TaskId,
    /// The text of an output kind.
    Kind,
    Path,
    /// A blob name read back from storage ([`parse_output_name`]).
    BlobName,
}

impl NamingInput {
    /// The argument name of a list of such inputs in the bulk functions (`paths[3]: ...`).
    fn list_name(self) -> &'static str {
        match self {
            Self::JobId => "job_ids",
            Self::TaskId => "task_ids",
            Self::Kind => "kinds",
            Self::Path => "paths",
            Self::BlobName => "blob_names",
        }
    }
}

/// Why a name could not be derived: which input was refused, a message naming it, and for the bulk
/// functions the index of the refused item in its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamingError {
    pub input: NamingInput,
    /// The reason, without the index (`Display` adds it).
    pub message: String,
    /// The position in a bulk call's list, counted over the whole list.
    pub index: Option<usize>,
}

impl NamingError {
    fn new(input: NamingInput, message: String) -> Self {
        Self {
            input,
            message,
            index: None,
        }
    }

    /// The same error, for the item at `index` of a bulk call's list.
    fn at(self, index: usize) -> Self {
        Self {
            index: Some(index),
            ..self
        }
    }
}

impl fmt::Display for NamingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.index {
            write!(f, "{}[{i}]: ", self.input.list_name())?;
        }
        f.write_str(&self.message)
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

/// The bytes a job id may hold: ASCII letters, digits, `-`, `_` and `:`.
const JOB_ID_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b':';
        b += 1;
    }
    table
};

/// Checks a Batch job id: 1–128 ASCII letters, digits, `-`, `_` and `:`.
pub fn validate_job_id(job_id: &str) -> Result<(), NamingError> {
    if (1..=MAX_JOB_ID_LEN).contains(&job_id.len())
        && job_id.bytes().all(|b| JOB_ID_BYTES[b as usize])
    {
        return Ok(());
    }
    check_id("job id", job_id, MAX_JOB_ID_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':')
    })
    .map_err(|m| NamingError::new(NamingInput::JobId, m))
}

/// Checks a Batch task id: 1–64 ASCII letters, digits, `-` and `_`.
pub fn validate_task_id(task_id: &str) -> Result<(), NamingError> {
    check_id("task id", task_id, MAX_TASK_ID_LEN, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
    })
    .map_err(|m| NamingError::new(NamingInput::TaskId, m))
}

/// Checks the text of an output kind (built-in or custom).
pub fn validate_kind(kind: &str) -> Result<(), NamingError> {
    let refuse = |message: String| Err(NamingError::new(NamingInput::Kind, message));
    let err = |why: String| refuse(format!("output kind {kind:?} {why}"));
    if kind.is_empty() {
        return refuse("output kind must not be empty".into());
    }
    if kind == "." || kind == ".." {
        return err("is not a valid path segment".into());
    }
    if kind.ends_with('.') {
        return err(format!("ends in '.': {DOT_REASON}"));
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

/// Is `lower` usable as it is after `job-`: `^[a-z0-9][-a-z0-9]*$`, no trailing `-`, no `--`?
fn is_plain_container_id(lower: &[u8]) -> bool {
    if lower.len() > MAX_PLAIN_ID_LEN {
        return false;
    }
    let mut prev = b'-'; // so a leading '-' fails like a doubled one
    for &b in lower {
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || (b == b'-' && prev != b'-')) {
            return false;
        }
        prev = b;
    }
    prev != b'-'
}

/// The container name of a job's outputs, as the Batch File Conventions define it.
pub fn container_name(job_id: &str) -> Result<String, NamingError> {
    let mut name = String::with_capacity(4 + job_id.len().max(HASHED_PREFIX_LEN + 41));
    push_container_name(&mut name, job_id)?;
    Ok(name)
}

/// Appends the container name of `job_id` to `out`.
fn push_container_name(out: &mut String, job_id: &str) -> Result<(), NamingError> {
    validate_job_id(job_id)?;
    // Job ids are ASCII (checked above), so bytes are characters and every slice below is valid UTF-8.
    let mut buf = [0u8; MAX_JOB_ID_LEN];
    let lower = &mut buf[..job_id.len()];
    lower.copy_from_slice(job_id.as_bytes());
    lower.make_ascii_lowercase();
    let lower = &buf[..job_id.len()];
    out.push_str("job-");
    if is_plain_container_id(lower) {
        out.push_str(ascii(lower));
        return Ok(());
    }
    // Runs of ':', '_' and '-' become one '-'; leading ones vanish; cut, then trim the end.
    let mut cut = [0u8; HASHED_PREFIX_LEN];
    let mut len = 0;
    for &b in lower {
        if len == HASHED_PREFIX_LEN {
            break;
        }
        let sep = matches!(b, b':' | b'_' | b'-');
        if !sep || (len > 0 && cut[len - 1] != b'-') {
            cut[len] = if sep { b'-' } else { b };
            len += 1;
        }
    }
    while len > 0 && cut[len - 1] == b'-' {
        len -= 1;
    }
    out.push_str(if len == 0 { "job" } else { ascii(&cut[..len]) });
    out.push('-');
    let mut hex = [0u8; 40];
    for (i, b) in sha1_short(lower).iter().enumerate() {
        hex[2 * i] = HEX[(b >> 4) as usize];
        hex[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out.push_str(ascii(&hex));
    Ok(())
}

/// SHA-1 of a job id (at most [`MAX_JOB_ID_LEN`] bytes): padded by hand into at most three blocks on
/// the stack and compressed directly, without the streaming hasher's buffering (the same digest).
fn sha1_short(data: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut padded = [0u8; 3 * BLOCK];
    let blocks = (data.len() + 1 + 8).div_ceil(BLOCK);
    let Some(end) = padded.get_mut(..blocks * BLOCK) else {
        return Sha1::digest(data).into(); // longer than any job id
    };
    end[..data.len()].copy_from_slice(data);
    end[data.len()] = 0x80;
    let bits = (data.len() as u64 * 8).to_be_bytes();
    end[blocks * BLOCK - 8..].copy_from_slice(&bits);
    let mut state = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    for block in end.chunks_exact(BLOCK) {
        let block = sha1::digest::generic_array::GenericArray::from_slice(block);
        sha1::compress(&mut state, std::slice::from_ref(block));
    }
    let mut digest = [0u8; 20];
    for (to, word) in digest.chunks_exact_mut(4).zip(state) {
        to.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// Bytes known to be ASCII as a `&str` (empty if they were not, which the callers rule out).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Many strings packed in one buffer: the bulk functions take and give these, one allocation for all.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StrList {
    buf: String,
    ends: Vec<usize>,
}

impl StrList {
    /// An empty list with room for `n` strings of about `avg_len` bytes.
    pub fn with_capacity(n: usize, avg_len: usize) -> Self {
        Self {
            buf: String::with_capacity(n * avg_len),
            ends: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, s: &str) {
        self.buf.push_str(s);
        self.ends.push(self.buf.len());
    }

    /// Appends one string written by `write`; on error nothing is appended.
    fn push_with<E>(&mut self, write: impl FnOnce(&mut String) -> Result<(), E>) -> Result<(), E> {
        let start = self.buf.len();
        match write(&mut self.buf) {
            Ok(()) => {
                self.ends.push(self.buf.len());
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    /// Empties the list, keeping its memory for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len()).map(|i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.buf[start..self.ends[i]]
        })
    }
}

impl<'a> FromIterator<&'a str> for StrList {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut list = StrList::default();
        iter.into_iter().for_each(|s| list.push(s));
        list
    }
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

/// Is `path` absolute: `/x` or `\x` everywhere, and on Windows a drive prefix too (`C:`, `C:\x`, `C:/x`)?
/// Elsewhere `a:b` is an ordinary relative name (`:` is valid in Linux file names).
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    matches!(b.first(), Some(b'/' | b'\\'))
        || (cfg!(windows) && b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':')
}

/// The blob-relative path a local relative path is saved under.
///
/// `\\` and `/` both separate; `.` and empty segments vanish; `..` removes the segment before it and is
/// dropped where there is none, so the result never climbs out of its prefix.
pub fn destination_path(path: &str) -> Result<String, NamingError> {
    let mut out = String::with_capacity(path.len());
    push_destination(&mut out, path, 0)?;
    Ok(out)
}

/// Appends the normalised `path` to `out`, after a `/` where `out` has more than `name_start` bytes
/// (a prefix of the same name); returns its segment count. On error `out` is left as it was.
fn push_destination(out: &mut String, path: &str, name_start: usize) -> Result<usize, NamingError> {
    let invalid = |why: &str| {
        Err(NamingError::new(
            NamingInput::Path,
            format!("path {path:?} {why}"),
        ))
    };
    if path.is_empty() {
        return invalid("is empty");
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return invalid(&format!("has a control character {}", describe(c)));
    }
    if is_absolute(path) {
        return invalid("is absolute; give a relative path or a destination");
    }
    let base = out.len();
    let mut starts: Vec<usize> = Vec::new(); // where each kept segment (with its leading '/') begins
    for seg in path.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
            }
            s => {
                starts.push(out.len());
                if out.len() > name_start {
                    out.push('/');
                }
                out.push_str(s);
            }
        }
    }
    if starts.is_empty() {
        out.truncate(base);
        return invalid("names no file once '.' and '..' are resolved");
    }
    if let Some(seg) = out[base..].split('/').find(|s| s.ends_with('.')) {
        let which = if seg == path {
            String::new()
        } else {
            format!(" ({seg:?})")
        };
        let why = format!("has a segment ending in '.'{which}: {DOT_REASON}");
        out.truncate(base);
        return invalid(&why);
    }
    Ok(starts.len())
}

/// Why a path segment may not end in `.`: Azure stores such a blob name without its trailing dots, so
/// `report.` would silently become (and overwrite) `report`. The .NET library passes them through.
const DOT_REASON: &str =
    "Azure Blob storage drops a segment's trailing dots, so it would be saved \
                          under another name; rename it";

/// The full blob name of `path` saved as `kind` (of `task_id`, or of the job).
pub fn blob_name(kind: &str, path: &str, task_id: Option<&str>) -> Result<String, NamingError> {
    let prefix = blob_prefix(kind, task_id)?;
    let mut name = String::with_capacity(prefix.len() + 1 + path.len());
    push_blob_name(&mut name, &prefix, path)?;
    Ok(name)
}

/// Bulk [`blob_name`], appended to `out`: the prefix is derived once; an error names the index of the
/// bad path, counted from `first_index` (so a long list can be derived in slices).
pub fn blob_names(
    kind: &str,
    paths: &[&str],
    task_id: Option<&str>,
    first_index: usize,
    out: &mut StrList,
) -> Result<(), NamingError> {
    let prefix = blob_prefix(kind, task_id)?;
    for (i, path) in paths.iter().enumerate() {
        out.push_with(|buf| push_blob_name(buf, &prefix, path))
            .map_err(|e| e.at(first_index + i))?;
    }
    Ok(())
}

/// Bulk [`container_name`], appended to `out`; an error names the index of the bad id, counted from
/// `first_index`.
pub fn container_names(
    job_ids: &[&str],
    first_index: usize,
    out: &mut StrList,
) -> Result<(), NamingError> {
    for (i, id) in job_ids.iter().enumerate() {
        out.push_with(|buf| push_container_name(buf, id))
            .map_err(|e| e.at(first_index + i))?;
    }
    Ok(())
}

/// Appends `{prefix}/{destination_path(path)}` to `out`, checking Azure's blob name limits.
fn push_blob_name(out: &mut String, prefix: &str, path: &str) -> Result<(), NamingError> {
    let start = out.len();
    out.push_str(prefix);
    let segments = push_destination(out, path, start)? + prefix.matches('/').count() + 1;
    let name = &out[start..];
    // Characters never outnumber bytes, so only long names need counting.
    if name.len() > MAX_BLOB_NAME_LEN {
        let chars = name.chars().count();
        if chars > MAX_BLOB_NAME_LEN {
            return Err(NamingError::new(NamingInput::Path, format!(
                "blob name for path {path:?} would be {chars} characters long; Azure allows {MAX_BLOB_NAME_LEN}"
            )));
        }
    }
    if segments > MAX_BLOB_SEGMENTS {
        return Err(NamingError::new(NamingInput::Path, format!(
            "blob name for path {path:?} would have {segments} segments; Azure allows {MAX_BLOB_SEGMENTS}"
        )));
    }
    Ok(())
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
        _ => Err(NamingError::new(
            NamingInput::Path,
            format!("blob name {blob_name:?} is not of the form '$Kind/path' or 'task/$Kind/path'"),
        )),
    }
}

/// Why `path` is not a file path in the conventions' normal form (`destination_path(p) == p`), or
/// `None` if it is. The first that applies of: "is empty", "has a control character", "has a '\\'",
/// "is absolute", "has a '..' segment", "has a '.' segment", "has an empty segment",
/// "has a segment ending in '.'".
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.chars().any(char::is_control) {
        return Some("has a control character");
    }
    if path.contains('\\') {
        return Some("has a '\\'");
    }
    if is_absolute(path) {
        return Some("is absolute");
    }
    let (mut parent, mut current, mut empty, mut dot) = (false, false, false, false);
    for segment in path.split('/') {
        match segment {
            ".." => parent = true,
            "." => current = true,
            "" => empty = true,
            s => dot |= s.ends_with('.'),
        }
    }
    if parent {
        Some("has a '..' segment")
    } else if current {
        Some("has a '.' segment")
    } else if empty {
        Some("has an empty segment")
    } else if dot {
        Some("has a segment ending in '.'")
    } else {
        None
    }
}

/// The kind text (without `$`) and file path of an output blob: `{task_id}/$Kind/{path}` of a task,
/// `$Kind/{path}` of the job (`task_id` is `None`), with the file path in normal form ([`path_problem`]).
///
/// A refusal is a [`NamingInput::BlobName`] error whose message is the reason alone: "it is not under
/// t1/", "it has no $Kind segment", the kind's own refusal, "it has no file path after its kind", or
/// "its file path " and the path's problem. `task_id` is compared, not validated.
pub fn parse_output_name<'a>(
    blob_name: &'a str,
    task_id: Option<&str>,
) -> Result<(&'a str, &'a str), NamingError> {
    let refuse = |why: String| Err(NamingError::new(NamingInput::BlobName, why));
    let mut rest = blob_name;
    if let Some(task) = task_id {
        let (first, after) = blob_name.split_once('/').unwrap_or((blob_name, ""));
        if first != task {
            return refuse(format!("it is not under {task}/"));
        }
        rest = after;
    }
    let (kind, path) = match rest.split_once('/') {
        Some((kind, path)) => (kind, path),
        None => (rest, ""),
    };
    let Some(kind) = kind.strip_prefix('$') else {
        return refuse("it has no $Kind segment".into());
    };
    if let Err(err) = validate_kind(kind) {
        return refuse(err.message);
    }
    if path.is_empty() {
        return refuse("it has no file path after its kind".into());
    }
    if let Some(problem) = path_problem(path) {
        return refuse(format!("its file path {problem}"));
    }
    Ok((kind, path))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha1_short_is_sha1_for_every_length_up_to_past_the_longest_id() {
        let data: Vec<u8> = (0..=255u8).cycle().take(3 * 64 + 10).collect();
        for len in 0..data.len() {
            let expected: [u8; 20] = Sha1::digest(&data[..len]).into();
            assert_eq!(super::sha1_short(&data[..len]), expected, "length {len}");
        }
    }

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
            let err = container_name(id).unwrap_err();
            assert_eq!((err.input, err.index), (NamingInput::JobId, None), "{id}");
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
        for p in ["", "/x", "\\x", "a\0b", "..", "./.", "a/..", "x\n"] {
            assert!(destination_path(p).is_err(), "{p:?}");
        }
        // Azure would store these without their trailing dots: refused, naming the segment.
        for (p, seg) in [("a../b", "a.."), ("x/...", "..."), ("d.\\f", "d.")] {
            let err = destination_path(p).unwrap_err().message;
            assert!(
                err.contains(&format!("ending in '.' ({seg:?})")),
                "{p:?}: {err}"
            );
        }
        let err = destination_path("report.").unwrap_err().message;
        assert!(
            err.starts_with("path \"report.\" has a segment ending in '.': Azure"),
            "{err}"
        );
        // A segment removed by '..' is not saved, so its dot does not matter.
        assert_eq!(destination_path("a./../b.txt").unwrap(), "b.txt");
    }

    #[test]
    fn drive_prefixes_are_absolute_only_on_windows() {
        for p in ["C:\\x", "C:/x", "c:x", "C:"] {
            assert_eq!(destination_path(p).is_err(), cfg!(windows), "{p:?}");
        }
        if !cfg!(windows) {
            assert_eq!(destination_path("a:b").unwrap(), "a:b");
            assert_eq!(destination_path("C:\\x").unwrap(), "C:/x");
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
        let mut out = StrList::default();
        let err = container_names(&["ok", "bad id"], 10, &mut out);
        let err = err.unwrap_err().to_string();
        assert!(err.starts_with("job_ids[11]: "), "{err}");
        assert_eq!(out.iter().collect::<Vec<_>>(), ["job-ok"]); // nothing of the bad one
        let err = blob_names("TaskOutput", &["a", "/abs"], Some("t"), 0, &mut out);
        assert!(err.unwrap_err().to_string().starts_with("paths[1]: "));
    }

    #[test]
    fn errors_name_the_input_and_bulk_ones_the_index() {
        let mut out = StrList::default();
        let single = container_name("bad id").unwrap_err();
        let bulk = container_names(&["ok", "bad id"], 10, &mut out).unwrap_err();
        assert_eq!(single.index, None);
        assert_eq!(
            bulk,
            NamingError {
                index: Some(11),
                ..single.clone()
            }
        );
        assert_eq!(bulk.to_string(), format!("job_ids[11]: {single}"));
        let input = |r: Result<String, NamingError>| r.unwrap_err().input;
        assert_eq!(input(blob_prefix("a/b", None)), NamingInput::Kind);
        assert_eq!(input(blob_prefix("Log", Some("a b"))), NamingInput::TaskId);
        assert_eq!(input(destination_path("/x")), NamingInput::Path);
        assert_eq!(input(file_path("x")), NamingInput::Path);
        // A bad kind or task id of a bulk call is no item of its list: no index.
        let err = blob_names("a/b", &["x"], None, 5, &mut out).unwrap_err();
        assert_eq!((err.input, err.index), (NamingInput::Kind, None));
        assert!(err.to_string().starts_with("output kind "), "{err}");
    }

    #[test]
    fn bulk_equals_single() {
        let long = "x".repeat(70);
        let ids = ["Job_1", "job-2", "-", long.as_str()];
        let mut names = StrList::default();
        container_names(&ids, 0, &mut names).unwrap();
        let single: Vec<String> = ids.iter().map(|i| container_name(i).unwrap()).collect();
        assert_eq!(names.iter().collect::<Vec<_>>(), single);
        names.clear();
        blob_names(
            "TaskLog",
            &["a", "../b/./c", "d\\e"],
            Some("t"),
            0,
            &mut names,
        )
        .unwrap();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            ["t/$TaskLog/a", "t/$TaskLog/b/c", "t/$TaskLog/d/e"]
        );
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

    #[test]
    fn path_problems_name_the_first_reason() {
        let cases = [
            ("", "is empty"),
            ("a\tb", "has a control character"),
            ("a\u{85}b", "has a control character"),
            ("a\\b", "has a '\\'"),
            ("/x", "is absolute"),
            ("/x/../y", "is absolute"),
            ("a/../b", "has a '..' segment"),
            ("..", "has a '..' segment"),
            ("a/./b/", "has a '.' segment"),
            ("a//b", "has an empty segment"),
            ("a/", "has an empty segment"),
            ("...", "has a segment ending in '.'"),
            ("report.", "has a segment ending in '.'"),
            ("a./b", "has a segment ending in '.'"),
        ];
        for (path, want) in cases {
            assert_eq!(path_problem(path), Some(want), "{path:?}");
        }
        for path in ["a", "a/b.txt", "%2E%2E/x", ".x", "x..y/ü", "$x/y"] {
            assert_eq!(path_problem(path), None, "{path:?}");
        }
        // A drive prefix is absolute only on Windows.
        let drive = if cfg!(windows) {
            Some("is absolute")
        } else {
            None
        };
        assert_eq!(path_problem("C:/x"), drive);
        assert_eq!(path_problem("c:"), drive);
    }

    #[test]
    fn path_problem_is_none_exactly_for_the_normal_form() {
        let parts = ["", ".", "..", "a", "\\", "c:", " ", "\t"];
        let n = parts.len();
        for code in 0..n * n * n * n {
            let path: Vec<&str> = (0..4).map(|i| parts[code / n.pow(i) % n]).collect();
            for k in 1..=4 {
                let p = path[..k].join("/");
                let normal = destination_path(&p).is_ok_and(|d| d == p);
                assert_eq!(path_problem(&p).is_none(), normal, "{p:?}");
            }
        }
    }

    #[test]
    fn output_names_parse_into_kind_and_path() {
        let task = Some("t1");
        assert_eq!(
            parse_output_name("t1/$TaskOutput/a/b.txt", task).unwrap(),
            ("TaskOutput", "a/b.txt")
        );
        assert_eq!(
            parse_output_name("$JobOutput/movie.mp4", None).unwrap(),
            ("JobOutput", "movie.mp4")
        );
        assert_eq!(
            parse_output_name("t1/$Custom/$x/y", task).unwrap(),
            ("Custom", "$x/y")
        );
    }

    #[test]
    fn output_name_refusals_say_why() {
        let task = Some("t1");
        let cases = [
            ("t2/$TaskOutput/x", task, "it is not under t1/"),
            ("t1", task, "it has no $Kind segment"),
            ("$TaskOutput/x", task, "it is not under t1/"),
            ("t1/TaskOutput/x", task, "it has no $Kind segment"),
            ("t1/$TaskOutput/x", None, "it has no $Kind segment"),
            ("t1/$/x", task, "output kind must not be empty"),
            (
                "t1/$$x/y",
                task,
                "output kind \"$x\" must not start with '$' (it is added by the conventions)",
            ),
            (
                "$..",
                None,
                "output kind \"..\" is not a valid path segment",
            ),
            (
                "$a\\b/c",
                None,
                "output kind \"a\\\\b\" has an invalid character '\\\\'",
            ),
            ("t1/$TaskOutput", task, "it has no file path after its kind"),
            (
                "t1/$TaskOutput/",
                task,
                "it has no file path after its kind",
            ),
            ("$JobOutput/", None, "it has no file path after its kind"),
            (
                "t1/$TaskOutput/a\tb",
                task,
                "its file path has a control character",
            ),
            ("t1/$TaskOutput/a\\b", task, "its file path has a '\\'"),
            ("t1/$TaskOutput//lead", task, "its file path is absolute"),
            (
                "t1/$TaskOutput/q/../b",
                task,
                "its file path has a '..' segment",
            ),
            ("$JobOutput/q/./z", None, "its file path has a '.' segment"),
            ("$JobOutput/x/", None, "its file path has an empty segment"),
        ];
        for (name, task_id, why) in cases {
            let err = parse_output_name(name, task_id).unwrap_err();
            assert_eq!(
                err,
                NamingError::new(NamingInput::BlobName, why.to_string()),
                "{name:?}"
            );
            assert_eq!(err.to_string(), why);
        }
    }

    #[test]
    fn parsed_names_are_the_ones_derived() {
        for (kind, path, task_id) in [
            ("TaskLog", "stdout.txt", Some("Task_1")),
            ("JobOutput", "a/b/c.png", None),
            ("Custom", "%2E%2E/ü x", Some("t")),
        ] {
            let name = blob_name(kind, path, task_id).unwrap();
            assert_eq!(parse_output_name(&name, task_id).unwrap(), (kind, path));
            assert_eq!(file_path(&name).unwrap(), path);
        }
    }
}
