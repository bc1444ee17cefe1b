//! Record-batch layer benchmarks: header view + CRC, in-place rewrite, decode and rebuild per
//! codec, on realistic batch sizes (16 KiB, 256 KiB, 1 MiB) with 100 B and 1 KiB records.
//!
//! Every group also measures `memcpy` of the same number of bytes (`dst.copy_from_slice(src)`),
//! so ratios to a plain copy come from one run. Throughput is in *logical* bytes: the size of
//! the batch uncompressed, whatever the codec, so numbers compare across codecs and with memcpy.
//!
//! Run: `cargo bench -p strait-benches --bench record_batch` (a few minutes on 2 cores).

use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use protocol_client::record::{BatchBuilder, Compression, DecodeLimits, RecordBatch};
use strait_benches::workload::value;

const BATCH_SIZES: [(usize, &str); 3] = [
    (16 << 10, "16KiB"),
    (256 << 10, "256KiB"),
    (1 << 20, "1MiB"),
];
const RECORD_SIZES: [(usize, &str); 2] = [(100, "100B"), (1024, "1KiB")];

/// A batch of about `batch_size` uncompressed bytes with `record_size`-byte values.
fn build(codec: Compression, batch_size: usize, record_size: usize) -> (RecordBatch, usize) {
    let mut builder = BatchBuilder::new(codec)
        .producer(1234, 5, 100)
        .transactional(true);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut i = 0;
    while builder.estimated_size() + record_size + 32 <= batch_size {
        let key = format!("key-{}", i % 977);
        builder.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value(i, record_size, &mut seed)),
            &[],
        );
        i += 1;
    }
    let logical = builder.estimated_size();
    (builder.build().expect("bench batch builds"), logical)
}

fn memcpy_bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    len: usize,
) {
    let src = vec![0x5au8; len];
    let mut dst = vec![0u8; len];
    group.bench_function(format!("memcpy/{id}"), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
}

fn header_view_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_batch/header_view_crc");
    for (size, size_name) in BATCH_SIZES {
        for (rec, rec_name) in RECORD_SIZES {
            let id = format!("{size_name}/{rec_name}");
            let (batch, logical) = build(Compression::None, size, rec);
            let bytes = batch.into_bytes();
            group.throughput(Throughput::Bytes(logical as u64));
            group.bench_function(format!("parse+getters+verify_crc/{id}"), |b| {
                b.iter(|| {
                    let batch = RecordBatch::parse(black_box(bytes.clone())).unwrap();
                    let fields = (
                        batch.base_offset(),
                        batch.last_offset(),
                        batch.producer_id(),
                        batch.producer_epoch(),
                        batch.base_sequence(),
                        batch.record_count(),
                        batch.is_transactional(),
                        batch.is_control(),
                        batch.max_timestamp(),
                        batch.compression().unwrap(),
                    );
                    batch.verify_crc().unwrap();
                    black_box(fields)
                })
            });
            memcpy_bench(&mut group, &id, logical);
        }
    }
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_batch/rewrite");
    for (size, size_name) in BATCH_SIZES {
        for (rec, rec_name) in RECORD_SIZES {
            let id = format!("{size_name}/{rec_name}");
            let (batch, logical) = build(Compression::None, size, rec);
            let bytes = batch.into_bytes();
            group.throughput(Throughput::Bytes(logical as u64));
            // Uniquely owned bytes per iteration (made in untimed setup), as a batch is once
            // the other batches of its fetch response have been forwarded: into_mut is then
            // zero copy and freeze updates the CRC incrementally.
            group.bench_function(format!("rewrite+freeze/{id}"), |b| {
                b.iter_batched(
                    || RecordBatch::parse(Bytes::copy_from_slice(&bytes)).unwrap(),
                    |batch| {
                        let mut m = batch.into_mut();
                        m.set_producer(-1, -1, -1);
                        m.set_transactional(false);
                        black_box(m.freeze())
                    },
                    BatchSize::LargeInput,
                )
            });
            // What the forward path does: verify the source CRC, rewrite, freeze.
            group.bench_function(format!("verify_crc+rewrite+freeze/{id}"), |b| {
                b.iter_batched(
                    || RecordBatch::parse(Bytes::copy_from_slice(&bytes)).unwrap(),
                    |batch| {
                        batch.verify_crc().unwrap();
                        let mut m = batch.into_mut();
                        m.set_producer(-1, -1, -1);
                        m.set_transactional(false);
                        black_box(m.freeze())
                    },
                    BatchSize::LargeInput,
                )
            });
            memcpy_bench(&mut group, &id, logical);
        }
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("record_batch/decode");
    for (size, size_name) in BATCH_SIZES {
        for (rec, rec_name) in RECORD_SIZES {
            let id = format!("{size_name}/{rec_name}");
            let mut logical = 0;
            for codec in Compression::ALL {
                let (batch, l) = build(codec, size, rec);
                logical = l;
                group.throughput(Throughput::Bytes(l as u64));
                group.bench_function(format!("{codec}/{id}"), |b| {
                    b.iter(|| {
                        let mut n = 0usize;
                        for record in batch.records(&limits).unwrap() {
                            n += record.unwrap().value.map_or(0, |v| v.len());
                        }
                        black_box(n)
                    })
                });
            }
            memcpy_bench(&mut group, &id, logical);
        }
    }
    group.finish();
}

fn rebuild(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("record_batch/rebuild");
    for (size, size_name) in BATCH_SIZES {
        for (rec, rec_name) in RECORD_SIZES {
            let id = format!("{size_name}/{rec_name}");
            let mut logical = 0;
            for codec in Compression::ALL {
                let (batch, l) = build(codec, size, rec);
                logical = l;
                group.throughput(Throughput::Bytes(l as u64));
                // Decode + re-encode + compress + CRC: the cost of renumbering a batch.
                group.bench_function(format!("{codec}/{id}"), |b| {
                    b.iter(|| black_box(batch.renumbered(&limits).unwrap()))
                });
            }
            memcpy_bench(&mut group, &id, logical);
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = header_view_crc, rewrite, decode, rebuild
}
criterion_main!(benches);
