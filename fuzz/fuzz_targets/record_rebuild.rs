//! Decodes the records of every batch in the input, rebuilds them with the builder (same codec,
//! and once uncompressed), re-decodes and compares: the records must be equal, and
//! renumbering must give the same records with consecutive offset deltas.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol_client::record::{
    split_batches, BatchBuilder, Compression, DecodeLimits, Record, RecordBatch,
};

const LIMIT: usize = 4 << 20;

fn decode(batch: &RecordBatch, limits: &DecodeLimits) -> Option<Vec<Record>> {
    batch
        .records(limits)
        .ok()?
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default().with_max_decompressed_bytes(LIMIT);
    for batch in split_batches(Bytes::copy_from_slice(data)).flatten() {
        let Some(records) = decode(&batch, &limits) else {
            continue;
        };
        let Ok(codec) = batch.compression() else {
            continue;
        };
        if records.is_empty() {
            continue;
        }
        for codec in [codec, Compression::None] {
            let mut builder = BatchBuilder::new(codec)
                .base_offset(batch.base_offset())
                .producer(
                    batch.producer_id(),
                    batch.producer_epoch(),
                    batch.base_sequence(),
                )
                .base_timestamp(batch.base_timestamp());
            let mut gapless = true;
            for record in &records {
                if builder
                    .push_record_with_offset_delta(batch.base_timestamp(), record)
                    .is_err()
                {
                    gapless = false;
                    break;
                }
            }
            if !gapless {
                // Offset deltas not increasing: rebuild with consecutive deltas instead.
                builder = BatchBuilder::new(codec).base_timestamp(batch.base_timestamp());
                for record in &records {
                    builder.push_record(batch.base_timestamp(), record);
                }
            }
            let rebuilt = builder.build().expect("decoded records can be rebuilt");
            let reparsed = RecordBatch::parse(rebuilt.into_bytes()).expect("rebuilt batch parses");
            assert!(reparsed.verify_crc().is_ok());
            let again = decode(&reparsed, &limits).expect("rebuilt batch decodes");
            assert_eq!(again.len(), records.len());
            for (a, b) in again.iter().zip(&records) {
                if gapless {
                    assert_eq!(a, b);
                } else {
                    assert_eq!(
                        Record {
                            offset_delta: b.offset_delta,
                            ..a.clone()
                        },
                        *b
                    );
                }
            }
        }
        if let Ok(renumbered) = batch.renumbered(&limits) {
            assert!(renumbered.verify_crc().is_ok());
            let again = decode(&renumbered, &limits).expect("renumbered batch decodes");
            assert_eq!(again.len(), records.len());
            for (i, (a, b)) in again.iter().zip(&records).enumerate() {
                assert_eq!(a.offset_delta, i as i32);
                assert_eq!(
                    Record {
                        offset_delta: b.offset_delta,
                        ..a.clone()
                    },
                    *b
                );
            }
        }
    }
});
