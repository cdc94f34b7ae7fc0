//! Test helpers shared by the modules' unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("batchfiles-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` in the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// A file named `name` holding `data`.
    pub fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, data).unwrap();
        path
    }
}

/// Gives the file at `path` the creation time `created`, as NTFS's file tunnelling does to a file
/// created under a name that another file left less than 15 s before. Windows only: Unix has no
/// settable creation time, and Wine 8 keeps the file's own. Returns whether the file has that
/// creation time now.
pub fn tunnel(path: &Path, created: Option<SystemTime>) -> bool {
    #[cfg(windows)]
    if let Some(created) = created {
        use std::os::windows::fs::FileTimesExt;
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let times = std::fs::FileTimes::new().set_created(created);
        file.set_times(times).unwrap();
    }
    let now = std::fs::metadata(path).unwrap().created().ok();
    created.is_some() && now == created
}

/// Whether the tests run under Wine (its ntdll exports `wine_get_version`), where some file system
/// behaviour differs from Windows': each test that asks says how.
#[cfg(windows)]
pub fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
    // SAFETY: both names are NUL-terminated; ntdll is loaded in every process and never unloaded.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
