//! Reaches every codec's decoder: the first input byte chooses the attribute bits (codec,
//! control, ...), the second the record count, and the rest becomes the records section of a
//! synthetic, otherwise valid batch (correct lengths and CRC). The raw input is also split and
//! decoded as batches. Must never panic; decompression stays under the cap.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol_client::record::{
    split_batches, BatchBuilder, Compression, DecodeLimits, RecordBatch, RecordError, BATCH_HEADER_LEN,
};

/// Small cap so that bombs are cut early and the fuzzer stays fast.
const LIMIT: usize = 4 << 20;

fn synthetic_batch(attributes: u8, count: u8, records: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    b.extend_from_slice(&100i64.to_be_bytes()); // baseOffset
    b.extend_from_slice(&((BATCH_HEADER_LEN - 12 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&5i32.to_be_bytes()); // partitionLeaderEpoch
    b.push(2); // magic
    b.extend_from_slice(&[0; 4]); // crc
    b.extend_from_slice(&i16::from(attributes & 0x7f).to_be_bytes());
    b.extend_from_slice(&i32::from(count.saturating_sub(1)).to_be_bytes()); // lastOffsetDelta
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // baseTimestamp
    b.extend_from_slice(&1_700_000_000_100i64.to_be_bytes()); // maxTimestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    b.extend_from_slice(&i32::from(count).to_be_bytes()); // recordCount
    b.extend_from_slice(records);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// CRC-32C (Castagnoli), bitwise: the fuzz crate does not depend on the crc32c crate.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn exercise(batch: &RecordBatch, limits: &DecodeLimits) {
    if let Ok(records) = batch.records(limits) {
        if batch.compression().ok() != Some(Compression::None) {
            assert!(records.data().len() <= limits.max_decompressed_bytes);
        }
        let mut n = 0i64;
        for record in records {
            if record.is_err() {
                break;
            }
            n += 1;
        }
        assert!(n <= i64::from(batch.record_count()));
        // Locating records without decoding them accepts and refuses exactly the same, and
        // copying them as encoded builds a batch of the same records as decoding and encoding
        // them.
        if let Ok(mut raw) = batch.records(limits) {
            let data = raw.data().clone();
            let mut copied = BatchBuilder::new(Compression::None);
            let mut decoded = BatchBuilder::new(Compression::None);
            let mut decoder = batch.records(limits).expect("decoded once already");
            loop {
                match (raw.next_raw(), decoder.next()) {
                    (Some(Ok(r)), Some(Ok(d))) => {
                        copied.push_raw(batch.base_timestamp(), &r, &data);
                        decoded.push_record(batch.base_timestamp(), &d);
                    }
                    (Some(Err(a)), Some(Err(b))) => {
                        assert_eq!(format!("{a:?}"), format!("{b:?}"));
                        break;
                    }
                    (None, None) => {
                        // The same records (padded varints are copied as they came, so the
                        // bytes may differ where the input was not in shortest form).
                        if let (Ok(a), Ok(b)) = (copied.build(), decoded.build()) {
                            let all = |b: &RecordBatch| -> Vec<_> {
                                b.records(limits)
                                    .expect("a built batch decodes")
                                    .collect::<Result<_, _>>()
                                    .expect("a built batch's records decode")
                            };
                            assert_eq!(all(&a), all(&b));
                            assert_eq!(a.max_timestamp(), b.max_timestamp());
                        }
                        break;
                    }
                    (a, b) => panic!("next_raw {a:?} but the iterator {b:?}"),
                }
            }
        }
    }
    let _ = batch.control_type();
    let _ = batch.has_offset_gaps(limits);
    if let Ok(renumbered) = batch.renumbered(limits) {
        assert!(renumbered.verify_crc().is_ok());
        assert!(!renumbered.has_offset_gaps(limits).unwrap());
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default().with_max_decompressed_bytes(LIMIT);
    if let [attributes, count, records @ ..] = data {
        let bytes = synthetic_batch(*attributes, *count, records);
        match RecordBatch::parse(Bytes::from(bytes)) {
            Ok(batch) => {
                assert!(batch.verify_crc().is_ok());
                exercise(&batch, &limits);
            }
            // The count is checked against uncompressed record bytes at parse time.
            Err(RecordError::CountExceedsBytes { .. }) => assert_eq!(attributes & 0x07, 0),
            Err(e) => panic!("synthetic header rejected: {e}"),
        }
    }
    for batch in split_batches(Bytes::copy_from_slice(data)).flatten() {
        exercise(&batch, &limits);
    }
});
