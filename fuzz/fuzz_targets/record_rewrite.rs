//! Splits the input into batches and rewrites each the way the replicator does (producer
//! fields, transactional bit, base offset, leader epoch), then re-parses it. The CRC must verify
//! after the rewrite whenever it verified before (and stay wrong when it was wrong), and equal a
//! full recomputation. Each batch is also rewritten after fixing its CRC, so every input reaches
//! the "must verify" path.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol_client::record::{split_batches, RecordBatch};

fn rewrite(batch: RecordBatch, selector: u8) -> RecordBatch {
    let mut m = batch.into_mut();
    m.set_base_offset(i64::from(selector) << 20);
    m.set_partition_leader_epoch(i32::from(selector));
    match selector % 4 {
        0 => m.set_producer(-1, -1, -1),
        1 => m.set_producer(4242, 7, i32::from(selector)),
        2 => {} // leave producer fields
        _ => {
            m.set_producer(1, 1, 1);
            m.set_producer(-1, -1, -1);
        }
    }
    if selector & 0x10 != 0 {
        m.set_transactional(selector & 0x20 != 0);
    }
    m.freeze()
}

fn check(batch: RecordBatch, selector: u8) {
    let was_ok = batch.verify_crc().is_ok();
    let original = batch.as_bytes().clone();
    let rewritten = rewrite(batch, selector);
    let reparsed = RecordBatch::parse(rewritten.into_bytes()).expect("rewrite keeps the structure");
    assert_eq!(reparsed.verify_crc().is_ok(), was_ok);
    if was_ok {
        assert_eq!(reparsed.crc(), reparsed.compute_crc());
    }
    // Nothing but the rewritten header fields changed.
    assert_eq!(reparsed.len(), original.len());
    assert_eq!(&reparsed.as_bytes()[61..], &original[61..]);
    assert_eq!(reparsed.as_bytes()[16], original[16]);
    assert_eq!(&reparsed.as_bytes()[23..43], &original[23..43]);
    assert_eq!(&reparsed.as_bytes()[57..61], &original[57..61]);
}

fuzz_target!(|data: &[u8]| {
    let selector = data.first().copied().unwrap_or(0);
    for batch in split_batches(Bytes::copy_from_slice(data)).flatten() {
        // Same batch with its CRC made valid.
        let mut fixed = batch.as_bytes().to_vec();
        let crc = batch.compute_crc();
        fixed[17..21].copy_from_slice(&crc.to_be_bytes());
        let fixed = RecordBatch::parse(Bytes::from(fixed)).expect("same structure");
        assert!(fixed.verify_crc().is_ok());

        check(batch, selector);
        check(fixed, selector.wrapping_add(1));
    }
});
