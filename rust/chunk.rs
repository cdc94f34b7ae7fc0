//! Reads a regular file (or any stream of known size) in fixed-size blocks for Put Block, into buffers
//! the caller provides, hashing as it goes: each block's CRC-64 and, optionally, the whole file's MD5
//! (for the blob's Content-MD5), both in one pass over the block.
//!
//! The size is taken when the file is opened, and every block has its exact length from it:
//! `block_size`, except for a shorter last one. A file that turns out shorter (an early end) or
//! longer (a byte readable after the expected end) is an error rather than a silently partial
//! upload; after any error the reader is poisoned and every later call fails too.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};

use crate::checksum::{crc64_md5, Md5};
use crate::fileid::{self, FileId};

/// One block just read: the caller's buffer holds its bytes in `buf[..len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// 0 for the first block.
    pub index: u64,
    /// Where the block starts in the file.
    pub offset: u64,
    /// Bytes in the block: `block_size`, except for a shorter last one; never 0.
    pub len: usize,
    /// CRC-64/NVME of the block.
    pub crc64: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    /// Every byte of the size seen at open was returned, and the file ended there.
    Done,
    /// A read failed or the file changed: the position is no longer known, so no more blocks.
    Failed,
}

/// Splits a file of known size into blocks of `block_size` bytes (the last may be shorter).
///
/// [`open`](BlockReader::open) reads a regular file; [`new`](BlockReader::new) any reader, given
/// the size it should have.
#[derive(Debug)]
pub struct BlockReader<R = File> {
    reader: R,
    /// For messages; `None` for a reader given to [`new`](BlockReader::new).
    path: Option<PathBuf>,
    /// Which file was opened (see [`FileId`]); `None` for a reader given to `new`.
    identity: Option<FileId>,
    size: u64,
    block_size: usize,
    md5: Option<Md5>,
    /// Bytes returned in blocks so far.
    offset: u64,
    state: State,
}

impl BlockReader<File> {
    /// Opens the regular file at `path` and takes its size, to read it in `block_size`-byte blocks,
    /// also hashing the whole file with MD5 when `md5`.
    ///
    /// The file is opened as [`fileid::open_for_reading`] does: on Unix the open does not block on
    /// a FIFO, which is then refused like any other non-regular file (`InvalidInput`, "... is not a
    /// regular file"); on Windows its writer may still rename or delete it. A directory is an
    /// `IsADirectory` error (the OS error `EISDIR` on Unix). A `block_size` of 0 is an
    /// `InvalidInput` error.
    pub fn open(path: impl AsRef<Path>, block_size: usize, md5: bool) -> io::Result<Self> {
        let path = path.as_ref();
        check_block_size(block_size)?;
        let file = fileid::open_for_reading(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            #[cfg(unix)]
            return Err(io::Error::from_raw_os_error(libc::EISDIR));
            #[cfg(not(unix))] // Windows does not open a directory as a file: not reached there
            return Err(ErrorKind::IsADirectory.into());
        }
        if !meta.is_file() {
            let message = format!("{} is not a regular file", path.display());
            return Err(io::Error::new(ErrorKind::InvalidInput, message));
        }
        let identity = fileid::of_file(&file, &meta)?;
        let mut blocks = Self::new(file, meta.len(), block_size, md5)?;
        blocks.path = Some(path.to_owned());
        blocks.identity = Some(identity);
        Ok(blocks)
    }
}

impl BlockReader<File> {
    /// [`next_block`](Self::next_block) into a buffer not initialised yet (such as a new Python
    /// `bytes`), so that it is not zero-filled first, a memset as long as the read: on Unix the
    /// file is read straight into it. Returns the block, with `buf[..len]` then initialised.
    pub fn next_block_uninit(&mut self, buf: &mut [MaybeUninit<u8>]) -> io::Result<Option<Block>> {
        #[cfg(unix)]
        {
            if self.state == State::Reading && buf.len() >= self.next_len() {
                let len = self.next_len();
                let read = fill_uninit(&self.reader, &mut buf[..len]);
                let filled = read.inspect_err(|_| self.state = State::Failed)?;
                // SAFETY: `fill_uninit` wrote the first `filled` bytes.
                let buf =
                    unsafe { &mut *(&mut buf[..filled] as *mut [MaybeUninit<u8>] as *mut [u8]) };
                return self
                    .hash_and_check(buf, len)
                    .inspect_err(|_| self.state = State::Failed);
            }
        }
        buf.fill(MaybeUninit::new(0));
        // SAFETY: every byte was just initialised, and `MaybeUninit<u8>` has the layout of `u8`.
        let buf = unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) };
        self.next_block(buf)
    }
}

/// Reads until `buf` is full or the file ends, retrying interrupted reads; returns the bytes read,
/// all written into `buf` (`read(2)` at the file's position).
#[cfg(unix)]
fn fill_uninit(file: &File, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes, and `read` writes at most that.
        let n = unsafe { libc::read(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match usize::try_from(n) {
            Ok(0) => break,
            Ok(n) => filled += n.min(rest.len()),
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(filled)
}

impl<R: Read> BlockReader<R> {
    /// A reader of `reader`'s `size` bytes in `block_size`-byte blocks, also hashing them all with
    /// MD5 when `md5`. The reader must be at the start of the data. A `block_size` of 0 is an
    /// `InvalidInput` error.
    pub fn new(reader: R, size: u64, block_size: usize, md5: bool) -> io::Result<Self> {
        check_block_size(block_size)?;
        Ok(Self {
            reader,
            path: None,
            identity: None,
            size,
            block_size,
            md5: md5.then(Md5::new),
            offset: 0,
            state: State::Reading,
        })
    }

    /// Which file [`open`](BlockReader::open) opened, whatever its path leads to by now: (device,
    /// inode) on Unix, (volume serial number, file index) on Windows (see [`FileId`]).
    pub fn identity(&self) -> Option<FileId> {
        self.identity
    }

    /// The size taken at open (or given to [`new`](Self::new)).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The length of every block but a shorter last one.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The path given to [`open`](BlockReader::open); `None` for a reader given to
    /// [`new`](Self::new).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Bytes returned in blocks so far.
    pub fn bytes_read(&self) -> u64 {
        self.offset
    }

    /// How long a buffer the next [`next_block`](Self::next_block) needs: the next block's exact
    /// length, `min(block_size, size - bytes_read)`. 0 once every block was returned or after an
    /// error, and for an empty file, whose one call checks that it stayed empty.
    pub fn next_len(&self) -> usize {
        match self.state {
            // At most `block_size`, so it fits a usize.
            State::Reading => (self.size - self.offset).min(self.block_size as u64) as usize,
            State::Done | State::Failed => 0,
        }
    }

    /// Reads the next block into `buf[..len]` (`len` being [`next_len`](Self::next_len); a longer
    /// `buf` is fine, its tail untouched), retrying short and interrupted reads; `Ok(None)` after
    /// the last block. The block that reaches the size also checks that the file ends there.
    ///
    /// Errors: a `buf` shorter than `len` (`InvalidInput`; nothing is read, the reader stays
    /// usable); the read's own error; a file that ended early (`UnexpectedEof`) or goes on past its
    /// size (`InvalidData`), both "file changed while being read: ..."; and after any of the last
    /// three, every later call ("an earlier read of ... failed").
    pub fn next_block(&mut self, buf: &mut [u8]) -> io::Result<Option<Block>> {
        match self.state {
            State::Reading => {}
            State::Done => return Ok(None),
            State::Failed => {
                let message = format!("an earlier read of {} failed", self.name());
                return Err(io::Error::other(message));
            }
        }
        let len = self.next_len();
        let Some(buf) = buf.get_mut(..len) else {
            let message = format!(
                "buffer of {} bytes is smaller than the next block's {len}",
                buf.len()
            );
            return Err(io::Error::new(ErrorKind::InvalidInput, message));
        };
        self.read(buf).inspect_err(|_| self.state = State::Failed)
    }

    /// The whole file's MD5 once the last block was returned (for an empty file: once
    /// [`next_block`](Self::next_block) returned `None`); `None` before that, after an error, or
    /// without MD5.
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self.state {
            State::Done => self.md5.as_ref().map(Md5::finish),
            State::Reading | State::Failed => None,
        }
    }

    /// Fills `buf` (the whole next block) and hashes it; at the size, checks for the end.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<Option<Block>> {
        let len = buf.len();
        let filled = fill(&mut self.reader, buf)?;
        self.hash_and_check(&mut buf[..filled], len)
    }

    /// Hashes the next block just read into `buf` (`len` bytes were asked: fewer is an early end);
    /// at the size, checks for the end.
    fn hash_and_check(&mut self, buf: &mut [u8], len: usize) -> io::Result<Option<Block>> {
        if buf.len() < len {
            return Err(self.changed("shorter", ErrorKind::UnexpectedEof));
        }
        let crc64 = crc64_md5(buf, self.md5.as_mut());
        let offset = self.offset;
        let end = offset + buf.len() as u64;
        if end == self.size {
            if fill(&mut self.reader, &mut [0])? != 0 {
                return Err(self.changed("longer", ErrorKind::InvalidData));
            }
            self.state = State::Done;
        }
        self.offset = end;
        Ok((!buf.is_empty()).then(|| Block {
            index: offset / self.block_size as u64,
            offset,
            len: buf.len(),
            crc64,
        }))
    }

    fn changed(&self, how: &str, kind: ErrorKind) -> io::Error {
        let message = format!(
            "file changed while being read: {} is {how} than the {} bytes it had when opened",
            self.name(),
            self.size
        );
        io::Error::new(kind, message)
    }

    /// The path for messages, or "the stream".
    fn name(&self) -> String {
        self.path.as_ref().map_or_else(
            || "the stream".to_owned(),
            |path| path.display().to_string(),
        )
    }
}

fn check_block_size(block_size: usize) -> io::Result<()> {
    if block_size == 0 {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "block size must be at least 1",
        ));
    }
    Ok(())
}

/// Reads until `buf` is full or the reader ends, retrying interrupted reads; returns the bytes read.
/// Unlike `read_exact`, tells how many were read, and a reader claiming more than `buf` held is an
/// `InvalidData` error, not a panic.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) if n <= buf.len() - filled => filled += n,
            Ok(n) => {
                let message = format!(
                    "reader claimed {n} bytes into a {}-byte buffer",
                    buf.len() - filled
                );
                return Err(io::Error::new(ErrorKind::InvalidData, message));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::tests::noise;
    use crate::checksum::{crc64, md5};
    use std::fs::OpenOptions;
    use std::io::{Cursor, Write};

    const BS: usize = 1000;
    const SIZES: [usize; 6] = [0, 1, BS - 1, BS, BS + 1, 3 * BS + 5];

    use crate::testutil::TempDir;

    /// Reads everything with buffers of exactly [`BlockReader::next_len`] bytes, checking each
    /// block against its slice of `data`; returns the blocks.
    fn read_all<R: Read>(blocks: &mut BlockReader<R>, data: &[u8]) -> Vec<Block> {
        let mut out = Vec::new();
        assert_eq!(blocks.md5(), None, "not at the end yet");
        loop {
            let mut buf = vec![0u8; blocks.next_len()];
            let Some(block) = blocks.next_block(&mut buf).unwrap() else {
                break;
            };
            let start = usize::try_from(block.offset).unwrap();
            let expected = &data[start..start + block.len];
            assert_eq!(buf, expected);
            assert_eq!(block.crc64, crc64(expected));
            assert_eq!(block.index, out.len() as u64);
            assert_eq!(block.offset, out.len() as u64 * BS as u64);
            out.push(block);
        }
        assert_eq!(blocks.bytes_read(), data.len() as u64);
        assert_eq!(blocks.md5(), Some(md5(data)));
        assert_eq!(blocks.next_len(), 0);
        assert_eq!(
            blocks.next_block(&mut []).unwrap(),
            None,
            "stays at the end"
        );
        out
    }

    fn lens(blocks: &[Block]) -> Vec<usize> {
        blocks.iter().map(|b| b.len).collect()
    }

    /// The lengths every reader of `size` bytes must return.
    fn expected_lens(size: usize) -> Vec<usize> {
        (0..size)
            .step_by(BS)
            .map(|offset| BS.min(size - offset))
            .collect()
    }

    #[test]
    fn block_boundaries_of_a_real_file() {
        let dir = TempDir::new();
        for size in SIZES {
            let data = noise(size, size as u64);
            let path = dir.file(&format!("f{size}"), &data);
            let mut blocks = BlockReader::open(&path, BS, true).unwrap();
            assert_eq!((blocks.size(), blocks.path()), (size as u64, Some(&*path)));
            let found = read_all(&mut blocks, &data);
            assert_eq!(lens(&found), expected_lens(size), "size {size}");
        }
        assert_eq!(expected_lens(3 * BS + 5), [BS, BS, BS, 5]);
    }

    #[test]
    fn a_file_read_into_uninitialised_buffers_gives_the_same_blocks() {
        let dir = TempDir::new();
        for size in SIZES {
            let data = noise(size, size as u64 + 7);
            let path = dir.file(&format!("u{size}"), &data);
            let mut blocks = BlockReader::open(&path, BS, true).unwrap();
            let mut found = Vec::new();
            loop {
                let mut buf = vec![MaybeUninit::new(0xAA_u8); blocks.next_len() + 3];
                let Some(block) = blocks.next_block_uninit(&mut buf).unwrap() else {
                    break;
                };
                let start = usize::try_from(block.offset).unwrap();
                let got: Vec<u8> = buf[..block.len]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                assert_eq!(got, &data[start..start + block.len]);
                assert_eq!(block.crc64, crc64(&got));
                found.push(block);
            }
            assert_eq!(lens(&found), expected_lens(size), "size {size}");
            assert_eq!(blocks.md5(), Some(md5(&data)));
        }
        // A buffer too short is refused as with next_block; a file that shrinks is an early end.
        let path = dir.file("s", &noise(3 * BS, 3));
        let mut blocks = BlockReader::open(&path, BS, false).unwrap();
        let mut short = vec![MaybeUninit::new(0_u8); BS - 1];
        let err = blocks.next_block_uninit(&mut short).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(BS as u64 + 1)
            .unwrap();
        let mut buf = vec![MaybeUninit::new(0_u8); BS];
        assert!(blocks.next_block_uninit(&mut buf).unwrap().is_some());
        let err = blocks.next_block_uninit(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert!(blocks.next_block_uninit(&mut buf).is_err(), "poisoned");
    }

    #[test]
    fn block_boundaries_in_memory() {
        for size in SIZES {
            let data = noise(size, size as u64);
            let mut blocks = BlockReader::new(Cursor::new(&data), size as u64, BS, true).unwrap();
            let found = read_all(&mut blocks, &data);
            assert_eq!(lens(&found), expected_lens(size), "size {size}");
        }
    }

    #[test]
    fn md5_comes_with_the_last_block_and_only_when_asked() {
        let data = noise(2 * BS, 11);
        let mut buf = [0u8; BS];
        let mut blocks = BlockReader::new(Cursor::new(&data), data.len() as u64, BS, true).unwrap();
        blocks.next_block(&mut buf).unwrap().unwrap();
        assert_eq!(blocks.md5(), None);
        blocks.next_block(&mut buf).unwrap().unwrap();
        assert_eq!(
            blocks.md5(),
            Some(md5(&data)),
            "a full last block ends the file"
        );

        let mut blocks =
            BlockReader::new(Cursor::new(&data), data.len() as u64, BS, false).unwrap();
        while blocks.next_block(&mut buf).unwrap().is_some() {}
        assert_eq!(blocks.bytes_read(), data.len() as u64);
        assert_eq!(blocks.md5(), None);
    }

    #[test]
    fn an_empty_file_has_no_blocks_and_the_empty_md5() {
        let mut blocks = BlockReader::new(io::empty(), 0, BS, true).unwrap();
        assert_eq!(blocks.next_len(), 0);
        assert_eq!(blocks.md5(), None, "not checked to be empty yet");
        assert_eq!(blocks.next_block(&mut []).unwrap(), None);
        assert_eq!(blocks.md5(), Some(md5(b"")));
        assert_eq!(blocks.bytes_read(), 0);
    }

    /// Returns 1..=7 bytes per read, and an `Interrupted` error every fifth call.
    struct Trickle<'a> {
        data: &'a [u8],
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(5) {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = (self.calls % 7 + 1).min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_and_interrupted_reads_still_fill_whole_blocks() {
        for size in SIZES {
            let data = noise(size, 7);
            let trickle = Trickle {
                data: &data,
                calls: 0,
            };
            let mut blocks = BlockReader::new(trickle, size as u64, BS, true).unwrap();
            let found = read_all(&mut blocks, &data);
            assert_eq!(lens(&found), expected_lens(size), "size {size}");
        }
    }

    #[test]
    fn a_longer_buffer_is_filled_to_the_block_and_no_further() {
        let data = noise(BS + 1, 3);
        let mut blocks = BlockReader::new(Cursor::new(&data), data.len() as u64, BS, true).unwrap();
        let mut buf = vec![0xAA; 2 * BS];
        assert_eq!(blocks.next_block(&mut buf).unwrap().unwrap().len, BS);
        assert_eq!(&buf[..BS], &data[..BS]);
        assert!(buf[BS..].iter().all(|&b| b == 0xAA));
        assert_eq!(blocks.next_block(&mut buf).unwrap().unwrap().len, 1);
        assert_eq!(buf[0], data[BS]);
        assert_eq!(blocks.md5(), Some(md5(&data)));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let err = BlockReader::new(io::empty(), 0, 0, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let dir = TempDir::new();
        let err = BlockReader::open(dir.file("f", b"x"), 0, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        let mut blocks = BlockReader::new(Cursor::new(vec![1u8; 10]), 10, 8, true).unwrap();
        let err = blocks.next_block(&mut [0; 7]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let block = blocks.next_block(&mut [0; 8]).unwrap().unwrap();
        assert_eq!(
            (block.offset, block.len),
            (0, 8),
            "a too-small buffer consumes nothing and does not poison"
        );
        assert_eq!(blocks.next_len(), 2);
    }

    #[test]
    fn open_errors() {
        let dir = TempDir::new();
        let err = BlockReader::open(dir.join("missing"), BS, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = BlockReader::open(dir.path(), BS, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::IsADirectory);
        #[cfg(unix)]
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let dir = TempDir::new();
        let path = dir.join("fifo");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let err = BlockReader::open(&path, BS, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    /// Asserts that `err` reports a change, and that `blocks` is now poisoned.
    fn assert_changed_and_poisoned<R: Read>(
        blocks: &mut BlockReader<R>,
        err: &io::Error,
        how: &str,
        bytes_read: u64,
    ) {
        assert!(
            err.to_string()
                .starts_with("file changed while being read: ")
                && err.to_string().contains(how),
            "{err}"
        );
        assert_eq!(blocks.next_len(), 0);
        let again = blocks.next_block(&mut [0; BS]).unwrap_err();
        assert!(
            again.to_string().starts_with("an earlier read of "),
            "{again}"
        );
        assert_eq!(blocks.md5(), None);
        assert_eq!(blocks.bytes_read(), bytes_read);
    }

    #[test]
    fn a_file_that_shrinks_is_an_error() {
        let dir = TempDir::new();
        let path = dir.file("f", &noise(3 * BS + 5, 1));
        let mut blocks = BlockReader::open(&path, BS, true).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(BS as u64 + 3)
            .unwrap();
        let mut buf = [0u8; BS];
        assert_eq!(blocks.next_block(&mut buf).unwrap().unwrap().offset, 0);
        let err = blocks.next_block(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        assert_eq!(
            err.to_string(),
            format!(
                "file changed while being read: {} is shorter than the {} bytes it had when opened",
                path.display(),
                3 * BS + 5
            )
        );
        assert_changed_and_poisoned(&mut blocks, &err, "shorter", BS as u64);
        let again = blocks.next_block(&mut buf).unwrap_err();
        assert_eq!(
            again.to_string(),
            format!("an earlier read of {} failed", path.display())
        );
    }

    #[test]
    fn a_file_that_grows_is_an_error_at_its_old_end() {
        let dir = TempDir::new();
        for size in [0, 5, BS, 2 * BS] {
            let path = dir.file(&format!("f{size}"), &noise(size, 2));
            let mut blocks = BlockReader::open(&path, BS, true).unwrap();
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(b"late")
                .unwrap();
            let mut buf = [0u8; BS];
            let whole_blocks_before_the_last = size.div_ceil(BS).saturating_sub(1);
            for _ in 0..whole_blocks_before_the_last {
                assert!(blocks.next_block(&mut buf).unwrap().is_some());
            }
            let err = blocks.next_block(&mut buf).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidData, "size {size}");
            let read = (whole_blocks_before_the_last * BS) as u64;
            assert_changed_and_poisoned(&mut blocks, &err, "longer", read);
        }
    }

    #[test]
    fn a_stream_shorter_or_longer_than_its_size_is_an_error() {
        let data = noise(2 * BS + 5, 4);
        let mut buf = [0u8; BS];

        let mut short = BlockReader::new(Cursor::new(&data), 3 * BS as u64, BS, true).unwrap();
        short.next_block(&mut buf).unwrap().unwrap();
        short.next_block(&mut buf).unwrap().unwrap();
        let err = short.next_block(&mut buf).unwrap_err();
        assert!(err.to_string().contains("the stream is shorter"), "{err}");
        assert_changed_and_poisoned(&mut short, &err, "shorter", 2 * BS as u64);

        let mut long = BlockReader::new(Cursor::new(&data), 2 * BS as u64, BS, true).unwrap();
        long.next_block(&mut buf).unwrap().unwrap();
        let err = long.next_block(&mut buf).unwrap_err();
        assert_changed_and_poisoned(&mut long, &err, "longer", BS as u64);
    }

    /// Yields `good` bytes, then fails, then would read on.
    struct FailOnce {
        good: usize,
        failed: bool,
    }

    impl Read for FailOnce {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 && !self.failed {
                self.failed = true;
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf
                .len()
                .min(if self.failed { buf.len() } else { self.good });
            self.good -= n.min(self.good);
            buf[..n].fill(0);
            Ok(n)
        }
    }

    #[test]
    fn an_io_error_poisons_the_reader() {
        let reader = FailOnce {
            good: 12,
            failed: false,
        };
        let mut blocks = BlockReader::new(reader, 100, 8, true).unwrap();
        let mut buf = [0u8; 8];
        assert!(blocks.next_block(&mut buf).unwrap().is_some());
        let err = blocks.next_block(&mut buf).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        let again = blocks.next_block(&mut buf).unwrap_err();
        assert_eq!(again.to_string(), "an earlier read of the stream failed");
        assert_eq!(blocks.next_len(), 0);
        assert_eq!(blocks.md5(), None);
        assert_eq!(blocks.bytes_read(), 8);
    }

    /// Claims to have read more than it was given room for.
    struct Liar;

    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            Ok(buf.len() + 1)
        }
    }

    #[test]
    fn a_lying_reader_is_an_error_not_a_panic() {
        let mut blocks = BlockReader::new(Liar, 8, 8, true).unwrap();
        let err = blocks.next_block(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
        assert!(blocks.next_block(&mut [0; 8]).is_err(), "poisoned");
    }
}
