//! Reads a stream in fixed-size blocks into a caller's reused buffer, hashing as it goes: each block's
//! CRC-64 (for Put Block) and, optionally, the whole stream's MD5 (for the blob's Content-MD5).

use std::io::{self, ErrorKind, Read};

use crate::checksum::{crc64_md5, Md5};

/// One block just read: the caller's buffer holds its bytes in `buf[..len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// 0 for the first block.
    pub index: u64,
    /// Where the block starts in the stream.
    pub offset: u64,
    /// Bytes in the block: `block_size`, except for a shorter last one.
    pub len: usize,
    /// CRC-64/NVME of the block.
    pub crc64: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Reading,
    Eof,
    /// A read failed, possibly after consuming bytes: the stream position is no longer known.
    Failed,
}

/// Splits a reader into blocks of `block_size` bytes (the last may be shorter).
#[derive(Debug)]
pub struct BlockReader<R> {
    reader: R,
    block_size: usize,
    md5: Option<Md5>,
    index: u64,
    bytes_read: u64,
    state: State,
}

impl<R: Read> BlockReader<R> {
    /// A reader of `block_size`-byte blocks, also hashing the whole stream with MD5 when `md5`.
    /// A `block_size` of 0 is an `InvalidInput` error.
    pub fn new(reader: R, block_size: usize, md5: bool) -> io::Result<Self> {
        if block_size == 0 {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "block size must be at least 1",
            ));
        }
        Ok(Self {
            reader,
            block_size,
            md5: md5.then(Md5::new),
            index: 0,
            bytes_read: 0,
            state: State::Reading,
        })
    }

    /// Reads the next block into `buf[..len]`, retrying short and interrupted reads until the block
    /// is full or the stream ends; `Ok(None)` at the end. `buf` must hold at least `block_size`
    /// bytes (else `InvalidInput`). After an I/O error every later call fails too, since the
    /// stream position is then unknown.
    pub fn next_block(&mut self, buf: &mut [u8]) -> io::Result<Option<Block>> {
        match self.state {
            State::Eof => return Ok(None),
            State::Failed => return Err(io::Error::other("an earlier read of this stream failed")),
            State::Reading => {}
        }
        let Some(buf) = buf.get_mut(..self.block_size) else {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "buffer of {} bytes is smaller than the block size {}",
                    buf.len(),
                    self.block_size
                ),
            ));
        };
        let len = self.fill(buf).inspect_err(|_| self.state = State::Failed)?;
        if len < buf.len() {
            self.state = State::Eof;
        }
        if len == 0 {
            return Ok(None);
        }
        let block = Block {
            index: self.index,
            offset: self.bytes_read,
            len,
            crc64: crc64_md5(&buf[..len], self.md5.as_mut()),
        };
        self.index += 1;
        self.bytes_read += len as u64;
        Ok(Some(block))
    }

    /// Bytes read so far, in the blocks returned.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The whole stream's MD5 once the end was reached (a short block, or `Ok(None)` from
    /// [`next_block`](Self::next_block)); `None` before that, after an error, or without MD5.
    pub fn md5(&self) -> Option<[u8; 16]> {
        match self.state {
            State::Eof => self.md5.as_ref().map(Md5::finish),
            State::Reading | State::Failed => None,
        }
    }

    /// Reads until `buf` is full or the stream ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) if n <= buf.len() - filled => filled += n,
                Ok(n) => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!(
                            "reader claimed {n} bytes into a {}-byte buffer",
                            buf.len() - filled
                        ),
                    ))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::tests::noise;
    use crate::checksum::{crc64, md5};
    use std::io::{Cursor, Write};

    const BS: usize = 1000;

    /// Reads everything, checking each block against its slice of `data`; returns the blocks.
    fn read_all<R: Read>(mut blocks: BlockReader<R>, data: &[u8]) -> Vec<Block> {
        let mut buf = vec![0u8; BS + 3];
        let mut out = Vec::new();
        while let Some(block) = blocks.next_block(&mut buf).unwrap() {
            let start = usize::try_from(block.offset).unwrap();
            let expected = &data[start..start + block.len];
            assert_eq!(&buf[..block.len], expected);
            assert_eq!(block.crc64, crc64(expected));
            assert_eq!(block.index, out.len() as u64);
            out.push(block);
        }
        assert_eq!(blocks.bytes_read(), data.len() as u64);
        assert_eq!(blocks.md5(), Some(md5(data)));
        assert_eq!(
            blocks.next_block(&mut buf).unwrap(),
            None,
            "stays at the end"
        );
        out
    }

    fn lens(blocks: &[Block]) -> Vec<usize> {
        blocks.iter().map(|b| b.len).collect()
    }

    #[test]
    fn block_boundaries_in_memory() {
        let cases: [(usize, &[usize]); 6] = [
            (0, &[]),
            (1, &[1]),
            (BS - 1, &[BS - 1]),
            (BS, &[BS]),
            (BS + 1, &[BS, 1]),
            (3 * BS + 5, &[BS, BS, BS, 5]),
        ];
        for (size, expected) in cases {
            let data = noise(size, size as u64);
            let blocks = read_all(
                BlockReader::new(Cursor::new(&data), BS, true).unwrap(),
                &data,
            );
            assert_eq!(lens(&blocks), expected, "size {size}");
        }
    }

    #[test]
    fn reads_a_real_file() {
        let path =
            std::env::temp_dir().join(format!("batchfiles-chunk-test-{}", std::process::id()));
        let data = noise(3 * BS + 5, 9);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let blocks = read_all(BlockReader::new(file, BS, true).unwrap(), &data);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(lens(&blocks), [BS, BS, BS, 5]);
        assert_eq!(blocks[3].offset, 3 * BS as u64);
    }

    #[test]
    fn empty_stream_has_no_blocks_and_the_empty_md5() {
        let mut blocks = BlockReader::new(io::empty(), BS, true).unwrap();
        assert_eq!(blocks.md5(), None, "not at the end yet");
        assert_eq!(blocks.next_block(&mut [0; BS]).unwrap(), None);
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
        for size in [0, 1, BS - 1, BS, BS + 1, 3 * BS + 5] {
            let data = noise(size, 7);
            let trickle = Trickle {
                data: &data,
                calls: 0,
            };
            let blocks = read_all(BlockReader::new(trickle, BS, true).unwrap(), &data);
            assert!(
                blocks.iter().rev().skip(1).all(|b| b.len == BS),
                "size {size}"
            );
        }
    }

    #[test]
    fn md5_only_when_asked_and_at_the_end() {
        let data = noise(2 * BS, 11);
        let mut buf = [0u8; BS];
        let mut blocks = BlockReader::new(Cursor::new(&data), BS, false).unwrap();
        while blocks.next_block(&mut buf).unwrap().is_some() {}
        assert_eq!(blocks.md5(), None);

        let mut blocks = BlockReader::new(Cursor::new(&data), BS, true).unwrap();
        blocks.next_block(&mut buf).unwrap();
        blocks.next_block(&mut buf).unwrap();
        assert_eq!(
            blocks.md5(),
            None,
            "a full last block does not reveal the end"
        );
        assert_eq!(blocks.next_block(&mut buf).unwrap(), None);
        assert_eq!(blocks.md5(), Some(md5(&data)));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let err = BlockReader::new(io::empty(), 0, true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);

        let mut blocks = BlockReader::new(Cursor::new(vec![1u8; 10]), 8, true).unwrap();
        let err = blocks.next_block(&mut [0; 7]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let block = blocks.next_block(&mut [0; 8]).unwrap().unwrap();
        assert_eq!(
            (block.offset, block.len),
            (0, 8),
            "a too-small buffer consumes nothing"
        );
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
    fn an_io_error_fails_every_later_call() {
        let mut blocks = BlockReader::new(
            FailOnce {
                good: 12,
                failed: false,
            },
            8,
            true,
        )
        .unwrap();
        let mut buf = [0u8; 8];
        assert!(blocks.next_block(&mut buf).unwrap().is_some());
        assert_eq!(
            blocks.next_block(&mut buf).unwrap_err().to_string(),
            "disk on fire"
        );
        assert!(blocks.next_block(&mut buf).is_err());
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
        let mut blocks = BlockReader::new(Liar, 8, true).unwrap();
        let err = blocks.next_block(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidData);
    }
}
