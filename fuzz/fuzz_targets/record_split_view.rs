//! Splits arbitrary bytes as a fetch response's records and reads every header field of each
//! batch, then verifies its CRC. Must never panic; the split must account for every byte.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol_client::record::split_batches;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let mut splitter = split_batches(input.clone());
    let mut consumed = 0usize;
    let mut failed = false;
    for batch in splitter.by_ref() {
        let Ok(batch) = batch else {
            failed = true;
            continue;
        };
        // Zero copy: each batch is the next slice of the input.
        assert_eq!(batch.as_bytes().as_ptr(), input[consumed..].as_ptr());
        consumed += batch.len();
        assert_eq!(batch.len(), 12 + batch.batch_length() as usize);
        assert_eq!(batch.magic(), 2);
        assert!(batch.record_count() >= 0);
        assert!(batch.last_offset_delta() >= 0);
        let _ = (
            batch.base_offset(),
            batch.partition_leader_epoch(),
            batch.crc(),
            batch.attributes(),
            batch.compression(),
            batch.timestamp_type(),
            batch.is_transactional(),
            batch.is_control(),
            batch.has_delete_horizon(),
            batch.base_timestamp(),
            batch.max_timestamp(),
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
            batch.last_offset(),
            batch.next_offset(),
        );
        let crc_ok = batch.verify_crc().is_ok();
        assert_eq!(crc_ok, batch.crc() == batch.compute_crc());
    }
    if !failed {
        assert_eq!(consumed + splitter.truncated_tail(), data.len());
    }
});
