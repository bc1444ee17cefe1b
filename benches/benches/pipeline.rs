//! Strait's forwarding pipeline without a broker (issue 7, part 3): its ceiling per core.
//!
//! Input: one Fetch response (v12) held in memory, as the connection's read loop hands it over
//! (the bytes after the correlation id): 16 partitions, each 16 source batches of about
//! 64 KiB (1 KiB or 100 B values, uncompressed, written by an idempotent producer), so about
//! 16 MiB per response. Each iteration forwards the whole response:
//!
//! 1. `codec::decode_response::<FetchRequest>`: record bytes become slices of the frame;
//! 2. `flow::plan::plan` per partition (split into batches, forward as they are);
//! 3. per batch, either pass-through (`RecordBatch::into_bytes`) or the idempotent path
//!    (`producer::rewrite_producer_fields`: new 61-byte header + the untouched records slice);
//! 4. `codec::produce::encode_produce` into a `BufChain`, one batch per partition per request,
//!    as the producer sends them;
//! 5. a sink: `io::sink().write_vectored` over `chunks_vectored` (no copy at all: the
//!    pipeline's own overhead), or a sink that copies every byte once into a 4 MiB ring (what
//!    the kernel's copy into the socket buffer costs).
//!
//! Throughput is in batch bytes forwarded; a `memcpy` of the same number of bytes runs in the
//! same group. Before criterion starts, a counting global allocator (`stats_alloc`) measures
//! the bytes allocated per GB forwarded on each path (zero copy means ≪ 1 GB).
//!
//! Run: `cargo bench -p strait-benches --bench pipeline`

use std::alloc::System;
use std::io::{IoSlice, Write};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use protocol_client::codec::decode_response;
use protocol_client::codec::produce::{
    encode_produce, PartitionRecords, ProduceBody, TopicRecords,
};
use protocol_client::fetcher::IsolationLevel;
use protocol_client::producer::rewrite_producer_fields;
use protocol_client::record::{BatchBuilder, Compression, DecodeLimits};
use replicator::flow::plan::{plan, Step};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use strait_benches::workload::ValuePool;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const PARTITIONS: i32 = 16;
const BATCHES_PER_PARTITION: usize = 16;
const BATCH_BYTES: usize = 64 * 1024;
const FETCH_VERSION: i16 = 12;
const PRODUCE_VERSION: i16 = 9;

/// The canned response (after the correlation id) and the number of batch bytes in it.
fn fetch_response(value_size: usize) -> (Bytes, usize) {
    let pool = ValuePool::new(value_size, 1024);
    let mut record_bytes = 0;
    let mut partitions = Vec::new();
    for p in 0..PARTITIONS {
        let mut data = BytesMut::new();
        let mut offset = 0i64;
        for b in 0..BATCHES_PER_PARTITION {
            let mut builder = BatchBuilder::new(Compression::None)
                .base_offset(offset)
                .producer(4242, 0, offset as i32);
            let mut i = 0;
            while builder.estimated_size() + value_size + 32 <= BATCH_BYTES {
                builder.push(
                    1_700_000_000_000 + offset + i as i64,
                    None,
                    Some(pool.get(b * 1000 + i)),
                    &[],
                );
                i += 1;
            }
            let batch = builder.build().expect("bench batch builds");
            offset = batch.next_offset();
            data.extend_from_slice(batch.as_bytes());
        }
        record_bytes += data.len();
        partitions.push(
            PartitionData::default()
                .with_partition_index(p)
                .with_high_watermark(offset)
                .with_last_stable_offset(offset)
                .with_log_start_offset(0)
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(data.freeze())),
        );
    }
    let resp = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench")))
        .with_partitions(partitions)]);
    let mut rest = BytesMut::new();
    rest.put_u8(0); // response header v1: no tagged fields
    resp.encode(&mut rest, FETCH_VERSION)
        .expect("encode fetch response");
    (rest.freeze(), record_bytes)
}

/// Where the produce requests go.
trait Sink {
    fn send(&mut self, chain: protocol_client::codec::BufChain);
}

/// `io::sink()`: takes the vectored writes without touching the bytes.
struct NullSink;

impl Sink for NullSink {
    fn send(&mut self, mut chain: protocol_client::codec::BufChain) {
        let mut sink = std::io::sink();
        while chain.has_remaining() {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = chain.chunks_vectored(&mut slices);
            let written = sink.write_vectored(&slices[..n]).expect("sink");
            chain.advance(written);
        }
    }
}

/// Copies every byte once into a ring, as the kernel copies into a socket buffer.
struct CopySink {
    ring: Vec<u8>,
    at: usize,
}

impl Sink for CopySink {
    fn send(&mut self, mut chain: protocol_client::codec::BufChain) {
        while chain.has_remaining() {
            let chunk = chain.chunk();
            let room = self.ring.len() - self.at;
            let n = chunk.len().min(room);
            self.ring[self.at..self.at + n].copy_from_slice(&chunk[..n]);
            self.at = (self.at + n) % self.ring.len();
            chain.advance(n);
        }
        black_box(&self.ring);
    }
}

/// Forwards one response; returns the batch bytes forwarded.
fn forward(rest: &Bytes, rewrite: bool, limits: &DecodeLimits, sink: &mut dyn Sink) -> usize {
    let resp = decode_response::<FetchRequest>(rest.clone(), FETCH_VERSION).expect("decode");
    let mut forwarded = 0;
    let mut per_partition: Vec<(i32, Vec<Vec<Bytes>>)> = Vec::with_capacity(PARTITIONS as usize);
    let mut seq = 0i32;
    for topic in resp.responses {
        for p in topic.partitions {
            let records = p.records.unwrap_or_default();
            let steps = plan(
                records,
                0,
                Vec::new(),
                IsolationLevel::ReadCommitted,
                limits,
            )
            .expect("plan");
            let mut batches = Vec::with_capacity(steps.len());
            for step in steps {
                if let Step::Forward { batch, .. } = step {
                    forwarded += batch.len();
                    if rewrite {
                        let count = batch.record_count();
                        let [head, records] = rewrite_producer_fields(&batch, 99, 1, seq);
                        seq = seq.wrapping_add(count);
                        batches.push(vec![head, records]);
                    } else {
                        batches.push(vec![batch.into_bytes()]);
                    }
                }
            }
            per_partition.push((p.partition_index, batches));
        }
    }
    // One batch per partition per request, as the producer sends them.
    let rounds = per_partition
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap_or(0);
    let mut iters: Vec<_> = per_partition
        .into_iter()
        .map(|(p, b)| (p, b.into_iter()))
        .collect();
    for round in 0..rounds {
        let partitions = iters
            .iter_mut()
            .filter_map(|(p, it)| {
                it.next().map(|parts| PartitionRecords {
                    partition: *p,
                    batches: parts,
                })
            })
            .collect();
        let topics = [TopicRecords {
            name: "A.bench".into(),
            partitions,
        }];
        let body = ProduceBody {
            transactional_id: None,
            acks: -1,
            timeout_ms: 30_000,
            topics: &topics,
        };
        let chain = encode_produce(round as i32, "strait", PRODUCE_VERSION, &body).expect("encode");
        sink.send(chain);
    }
    forwarded
}

/// Bytes allocated per GB forwarded, measured with the counting allocator.
fn zero_copy_check() {
    let limits = DecodeLimits::default();
    println!("zero-copy check (counting allocator, 1 GB forwarded per path):");
    for size in [1024usize, 100] {
        let (rest, bytes) = fetch_response(size);
        for rewrite in [false, true] {
            let mut sink = NullSink;
            forward(&rest, rewrite, &limits, &mut sink); // warm-up
            let iterations = (1_000_000_000 / bytes).max(1);
            let region = Region::new(GLOBAL);
            let mut total = 0usize;
            for _ in 0..iterations {
                total += forward(&rest, rewrite, &limits, &mut sink);
            }
            let stats = region.change();
            let per_gb = stats.bytes_allocated as f64 / (total as f64 / 1e9);
            println!(
                "  {size:>4} B values, {:<12} {:>10.0} bytes allocated per GB forwarded ({:.4} % of the data), {:.1} allocations per MB",
                if rewrite { "rewrite:" } else { "pass-through:" },
                per_gb,
                per_gb / 1e9 * 100.0,
                stats.allocations as f64 / (total as f64 / 1e6),
            );
        }
    }
}

fn pipeline(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    for size in [1024usize, 100] {
        let (rest, bytes) = fetch_response(size);
        let mut group = c.benchmark_group(format!("pipeline/{size}B-values"));
        group.throughput(Throughput::Bytes(bytes as u64));
        for rewrite in [false, true] {
            let path = if rewrite { "rewrite" } else { "pass-through" };
            group.bench_function(format!("{path}/null-sink"), |b| {
                let mut sink = NullSink;
                b.iter(|| black_box(forward(&rest, rewrite, &limits, &mut sink)))
            });
            group.bench_function(format!("{path}/copy-sink"), |b| {
                let mut sink = CopySink {
                    ring: vec![0u8; 4 << 20],
                    at: 0,
                };
                b.iter(|| black_box(forward(&rest, rewrite, &limits, &mut sink)))
            });
        }
        let src = vec![0x5au8; bytes];
        let mut dst = vec![0u8; bytes];
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = pipeline
}

fn main() {
    zero_copy_check();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
