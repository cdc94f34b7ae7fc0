//! Which file an open file or a path is, and opening a file to read it while its writer goes on: a
//! file's identity is (device, inode) on Unix and (volume serial number, file index) on Windows, the
//! pair Python's `os.stat` gives as `st_dev` and `st_ino` (on Windows up to Python 3.11; see
//! [`FileId`]).
//!
//! Only Unix and Windows are supported: elsewhere nothing tells two files apart.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::Path;

/// Which file: (device, inode) on Unix; on Windows (volume serial number, file index) from
/// `GetFileInformationByHandle`, which NTFS keeps for a file's life, across renames, and never gives a
/// file re-created under the same name (unlike its creation time, which NTFS's file tunnelling copies
/// to a file re-created within 15 s of the old one's rename or delete). Python 3.12 and later take
/// `os.stat`'s `st_dev` from `FILE_ID_INFO` instead, a 64-bit volume serial number.
pub type FileId = (u64, u64);

/// Opens `path` for reading without standing in its writer's way.
///
/// On Unix, without blocking on a FIFO (`O_NONBLOCK`: the caller then refuses non-regular files). On
/// Windows, sharing reading, writing and deleting (`FILE_SHARE_DELETE` too), so that the writer may
/// still rename or delete the file while it is open here, as log rotation does; a directory, which
/// Windows does not open as a file (`PermissionDenied`), is an `IsADirectory` error, "PATH is a
/// directory".
pub fn open_for_reading(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    #[cfg(windows)]
    std::os::windows::fs::OpenOptionsExt::share_mode(&mut options, windows::SHARE_ALL);
    let opened = options.open(path);
    #[cfg(windows)]
    let opened = opened.map_err(|err| windows::directory_error(err, path));
    opened
}

/// The identity of the open `file`, whose metadata is `meta`.
pub fn of_file(file: &File, meta: &Metadata) -> io::Result<FileId> {
    #[cfg(unix)]
    {
        let _ = file;
        Ok(unix_id(meta))
    }
    #[cfg(windows)]
    {
        let _ = meta;
        windows::file_index(file)
    }
}

/// What is at `path` now, links followed: its metadata and identity; `NotFound` when nothing is.
///
/// On Unix one `stat`. On Windows an open for its attributes only, sharing everything (it neither
/// reads the file nor keeps anyone from writing, renaming or deleting it), then its close; a directory
/// opens too, and its metadata says so. There a file deleted while open elsewhere may keep its name
/// until its last handle closes (Windows' classic deletion): Windows refuses to open it, a
/// `PermissionDenied` error (see [`deleted`]), and one that opens but says its deletion is pending is
/// `NotFound`. Wine 8 opens it and never says so: there it is still found.
pub fn at_path(path: &Path) -> io::Result<(Metadata, FileId)> {
    #[cfg(unix)]
    {
        let meta = std::fs::metadata(path)?;
        let id = unix_id(&meta);
        Ok((meta, id))
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        let file = OpenOptions::new()
            .access_mode(windows::FILE_READ_ATTRIBUTES)
            .share_mode(windows::SHARE_ALL)
            .custom_flags(windows::FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        if windows::delete_pending(&file)? {
            let message = format!("{} is deleted (its name goes once closed)", path.display());
            return Err(io::Error::new(io::ErrorKind::NotFound, message));
        }
        let meta = file.metadata()?;
        let id = windows::file_index(&file)?;
        Ok((meta, id))
    }
}

#[cfg(unix)]
fn unix_id(meta: &Metadata) -> FileId {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Whether the open `file` was deleted, though still open: no name left on Unix; on Windows
/// delete-pending, its name kept until its last handle closes (or gone at once on NTFS's POSIX
/// deletion, which Windows 10's `DeleteFile` uses).
pub fn deleted(file: &File) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.nlink() == 0)
    }
    #[cfg(windows)]
    {
        windows::delete_pending(file)
    }
}

#[cfg(windows)]
mod windows {
    use std::fs::File;
    use std::io;
    use std::mem::{size_of, MaybeUninit};
    use std::os::windows::io::AsRawHandle;
    use std::path::Path;

    use windows_sys::Win32::Storage::FileSystem::{
        FileStandardInfo, GetFileInformationByHandle, GetFileInformationByHandleEx,
        BY_HANDLE_FILE_INFORMATION, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
        FILE_STANDARD_INFO,
    };
    pub use windows_sys::Win32::Storage::FileSystem::{
        FILE_FLAG_BACKUP_SEMANTICS, FILE_READ_ATTRIBUTES,
    };

    /// Every other opener may read, write, rename and delete the file.
    pub const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

    /// (volume serial number, file index) of an open file.
    pub fn file_index(file: &File) -> io::Result<super::FileId> {
        let mut info = MaybeUninit::<BY_HANDLE_FILE_INFORMATION>::uninit();
        // SAFETY: the handle is open for the call's length, and `info` is valid for writes of a
        // BY_HANDLE_FILE_INFORMATION, which a successful call fills.
        let info = unsafe {
            if GetFileInformationByHandle(file.as_raw_handle(), info.as_mut_ptr()) == 0 {
                return Err(io::Error::last_os_error());
            }
            info.assume_init()
        };
        let index = (u64::from(info.nFileIndexHigh) << 32) | u64::from(info.nFileIndexLow);
        Ok((info.dwVolumeSerialNumber.into(), index))
    }

    /// Whether the open file is marked for deletion once its last handle closes.
    pub fn delete_pending(file: &File) -> io::Result<bool> {
        let mut info = MaybeUninit::<FILE_STANDARD_INFO>::uninit();
        // SAFETY: as in `file_index`, for a FILE_STANDARD_INFO of the size passed.
        let info = unsafe {
            let size = size_of::<FILE_STANDARD_INFO>() as u32;
            let buffer = info.as_mut_ptr().cast();
            if GetFileInformationByHandleEx(file.as_raw_handle(), FileStandardInfo, buffer, size)
                == 0
            {
                return Err(io::Error::last_os_error());
            }
            info.assume_init()
        };
        Ok(info.DeletePending)
    }

    /// `err` from opening `path` for reading, as an `IsADirectory` error if it is a directory.
    pub fn directory_error(err: io::Error, path: &Path) -> io::Error {
        let is_dir = || std::fs::metadata(path).is_ok_and(|meta| meta.is_dir());
        if err.kind() == io::ErrorKind::PermissionDenied && is_dir() {
            let message = format!("{} is a directory", path.display());
            io::Error::new(io::ErrorKind::IsADirectory, message)
        } else {
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Read, Write};

    #[cfg(windows)]
    use crate::testutil::under_wine;
    use crate::testutil::{tunnel, TempDir};

    #[test]
    fn the_identity_follows_the_file_not_its_name() {
        let dir = TempDir::new();
        let path = dir.file("log", b"first");
        let (meta, id) = at_path(&path).unwrap();
        assert!(meta.is_file());
        let file = open_for_reading(&path).unwrap();
        assert_eq!(of_file(&file, &file.metadata().unwrap()).unwrap(), id);
        let created = meta.created().ok();

        fs::rename(&path, dir.join("log.1")).unwrap();
        assert_eq!(at_path(&dir.join("log.1")).unwrap().1, id, "renamed");
        assert_eq!(at_path(&path).unwrap_err().kind(), io::ErrorKind::NotFound);

        // Re-created at once under the name: another file, even with the old creation time.
        fs::write(&path, b"first").unwrap();
        let tunnelled = tunnel(&path, created);
        #[cfg(windows)]
        assert!(tunnelled || under_wine(), "Windows sets the creation time");
        #[cfg(not(windows))]
        assert!(!tunnelled);
        assert_ne!(at_path(&path).unwrap().1, id);
        let again = open_for_reading(&path).unwrap();
        assert_ne!(of_file(&again, &again.metadata().unwrap()).unwrap(), id);

        // Appends and truncation keep it.
        let (_, new_id) = at_path(&path).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b" grown")
            .unwrap();
        assert_eq!(at_path(&path).unwrap().1, new_id);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(at_path(&path).unwrap().1, new_id);
    }

    #[test]
    fn a_file_open_for_reading_may_still_be_renamed_and_deleted_by_its_writer() {
        let dir = TempDir::new();
        let path = dir.file("log", b"line 1\n");
        let mut reader = open_for_reading(&path).unwrap();
        let mut writer = fs::OpenOptions::new().append(true).open(&path).unwrap();
        assert!(!deleted(&reader).unwrap());

        // Renamed away while open here and by the writer, who writes on.
        let rotated = dir.join("log.1");
        fs::rename(&path, &rotated).unwrap();
        writer.write_all(b"line 2\n").unwrap();
        assert!(!deleted(&reader).unwrap());
        assert_eq!(at_path(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
        drop(writer);

        let mut content = String::new();
        reader.read_to_string(&mut content).unwrap();
        assert_eq!(content, "line 1\nline 2\n");

        // Deleted while open here.
        let path = dir.file("log", b"x");
        let held = open_for_reading(&path).unwrap();
        fs::remove_file(&path).unwrap();
        // Wine 8 never says a deletion is pending (its DeletePending is always false): a known gap.
        #[cfg(windows)]
        assert!(deleted(&held).unwrap() || under_wine());
        #[cfg(not(windows))]
        assert!(deleted(&held).unwrap());
        drop(held);
        assert_eq!(at_path(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
        fs::write(&path, b"new").unwrap();
    }

    /// A rename over a file open here: allowed by POSIX rename semantics (Unix; Windows 10 1607 and
    /// later on NTFS, which std's `rename` asks for). Wine 8 has none and refuses it, as Windows'
    /// `MoveFileEx` (Python's `os.replace`) does: a writer replacing its log so while it is
    /// tracked fails there (a known gap).
    #[test]
    fn a_file_open_here_may_be_replaced_by_a_rename_with_posix_semantics() {
        let dir = TempDir::new();
        let path = dir.file("log", b"old");
        let mut reader = open_for_reading(&path).unwrap();
        let replacement = dir.file("log.tmp", b"new");
        let renamed = fs::rename(&replacement, &path);
        #[cfg(windows)]
        if under_wine() {
            assert_eq!(renamed.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
            return;
        }
        renamed.unwrap();
        #[cfg(unix)]
        assert!(deleted(&reader).unwrap(), "no name left");
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mut content = Vec::new();
        reader.read_to_end(&mut content).unwrap();
        assert_eq!(content, b"old");
    }

    #[test]
    fn a_directory_is_found_as_one_and_does_not_open_as_a_file_on_windows() {
        let dir = TempDir::new();
        let (meta, _) = at_path(dir.path()).unwrap();
        assert!(meta.is_dir());
        match open_for_reading(dir.path()) {
            #[cfg(windows)]
            Err(err) => {
                assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
                let message = format!("{} is a directory", dir.path().display());
                assert_eq!(err.to_string(), message);
            }
            #[cfg(unix)]
            Ok(file) => assert!(file.metadata().unwrap().is_dir()),
            other => panic!("{other:?}"),
        }
        let missing = dir.join("missing");
        assert_eq!(
            open_for_reading(&missing).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
