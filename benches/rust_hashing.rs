//! Throughput of the hashing core: CRC-64 and MD5 over 64 MiB in memory, and `BlockReader` over a
//! 256 MiB file in 4 MiB blocks (CRC-64 per block plus the whole-file MD5), read into one reused
//! buffer.

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use _native::checksum::{crc64, md5};
use _native::chunk::BlockReader;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

const MIB: usize = 1 << 20;

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn in_memory(c: &mut Criterion) {
    let data = noise(64 * MIB);
    let mut group = c.benchmark_group("64 MiB in memory");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("crc64", |b| b.iter(|| crc64(&data)));
    group.bench_function("md5", |b| b.iter(|| md5(&data)));
    group.finish();
}

fn block_reader(c: &mut Criterion) {
    const BLOCK: usize = 4 * MIB;
    let path = std::env::temp_dir().join(format!("batchfiles-bench-{}", std::process::id()));
    let chunk = noise(16 * MIB);
    let mut file = File::create(&path).expect("create temp file");
    for _ in 0..16 {
        file.write_all(&chunk).expect("write temp file");
    }
    drop(file);

    let mut group = c.benchmark_group("256 MiB file, 4 MiB blocks");
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Bytes(256 * MIB as u64));
    let mut buf = vec![0u8; BLOCK];
    for md5 in [false, true] {
        let name = if md5 { "crc64 + md5" } else { "crc64" };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut blocks = BlockReader::open(&path, BLOCK, md5).expect("open temp file");
                while blocks.next_block(&mut buf).expect("read").is_some() {}
                blocks.md5()
            })
        });
    }
    group.finish();
    std::fs::remove_file(&path).expect("remove temp file");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    targets = in_memory, block_reader
}
criterion_main!(benches);
