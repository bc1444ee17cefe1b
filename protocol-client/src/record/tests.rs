//! Tests of the record-batch layer.

use bytes::{BufMut, Bytes};
use proptest::prelude::*;

use super::varint::{write_varint, write_varlong};
use super::*;

const LIMITS: DecodeLimits = DecodeLimits {
    max_decompressed_bytes: 64 << 20,
    max_zstd_window_log: 27,
};

/// Lays out a v2 batch by hand (not with the builder), with a correct CRC.
#[allow(clippy::too_many_arguments)]
fn raw_batch(
    base_offset: i64,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    record_count: i32,
    records: &[u8],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_i64(base_offset);
    b.put_i32((49 + records.len()) as i32);
    b.put_i32(-1); // partitionLeaderEpoch
    b.put_i8(2);
    b.put_u32(0); // crc, below
    b.put_i16(attributes);
    b.put_i32(last_offset_delta);
    b.put_i64(base_timestamp);
    b.put_i64(base_timestamp);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(record_count);
    b.extend_from_slice(records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Encodes one record by hand.
fn raw_record(offset_delta: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![0u8];
    write_varlong(&mut body, i64::from(offset_delta) * 10);
    write_varint(&mut body, offset_delta);
    for field in [key, value] {
        match field {
            None => write_varint(&mut body, -1),
            Some(f) => {
                write_varint(&mut body, f.len() as i32);
                body.extend_from_slice(f);
            }
        }
    }
    write_varint(&mut body, 0);
    let mut out = Vec::new();
    write_varint(&mut out, body.len() as i32);
    out.extend_from_slice(&body);
    out
}

fn sample_builder(compression: Compression, n: usize, value_len: usize) -> BatchBuilder {
    let mut b = BatchBuilder::new(compression);
    for i in 0..n {
        let key = format!("key-{i}");
        let value: Vec<u8> = (0..value_len).map(|j| (i * 7 + j % 13) as u8).collect();
        let headers = [RecordHeader::new("trace", Some(key.as_bytes()))];
        b.push(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value),
            if i % 2 == 0 { &headers[..] } else { &[] },
        );
    }
    b
}

fn collect(batch: &RecordBatch) -> Vec<Record> {
    batch
        .records(&LIMITS)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn known_answer_hand_assembled_batch() {
    #[rustfmt::skip]
    let records: &[u8] = &[
        // record 0: length 15, attributes, tsDelta 0, offsetDelta 0, key "k", value "hello",
        // 1 header "h" -> null
        0x1e, 0x00, 0x00, 0x00, 0x02, b'k', 0x0a, b'h', b'e', b'l', b'l', b'o',
        0x02, 0x02, b'h', 0x01,
        // record 1: length 6, attributes, tsDelta 5, offsetDelta 1, null key, empty value,
        // no headers
        0x0c, 0x00, 0x0a, 0x02, 0x01, 0x00, 0x00,
    ];
    #[rustfmt::skip]
    let mut bytes: Vec<u8> = [
        &42i64.to_be_bytes()[..],                 // baseOffset
        &(49 + records.len() as i32).to_be_bytes(), // batchLength = 72
        &7i32.to_be_bytes(),                      // partitionLeaderEpoch
        &[2],                                     // magic
        &[0, 0, 0, 0],                            // crc (filled below)
        &0x0010i16.to_be_bytes(),                 // attributes: transactional
        &1i32.to_be_bytes(),                      // lastOffsetDelta
        &1_700_000_000_000i64.to_be_bytes(),      // baseTimestamp
        &1_700_000_000_005i64.to_be_bytes(),      // maxTimestamp
        &1000i64.to_be_bytes(),                   // producerId
        &3i16.to_be_bytes(),                      // producerEpoch
        &17i32.to_be_bytes(),                     // baseSequence
        &2i32.to_be_bytes(),                      // recordCount
        records,
    ]
    .concat();
    assert_eq!(bytes.len(), 61 + 23);
    let expected_crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&expected_crc.to_be_bytes());

    let batch = RecordBatch::parse(Bytes::from(bytes)).unwrap();
    assert_eq!(batch.base_offset(), 42);
    assert_eq!(batch.batch_length(), 72);
    assert_eq!(batch.partition_leader_epoch(), 7);
    assert_eq!(batch.magic(), 2);
    assert_eq!(batch.crc(), expected_crc);
    assert_eq!(batch.attributes(), 0x10);
    assert_eq!(batch.compression().unwrap(), Compression::None);
    assert_eq!(batch.timestamp_type(), TimestampType::CreateTime);
    assert!(batch.is_transactional());
    assert!(!batch.is_control());
    assert!(!batch.has_delete_horizon());
    assert_eq!(batch.last_offset_delta(), 1);
    assert_eq!(batch.base_timestamp(), 1_700_000_000_000);
    assert_eq!(batch.max_timestamp(), 1_700_000_000_005);
    assert_eq!(batch.producer_id(), 1000);
    assert_eq!(batch.producer_epoch(), 3);
    assert_eq!(batch.base_sequence(), 17);
    assert_eq!(batch.record_count(), 2);
    assert_eq!(batch.last_offset(), 43);
    assert_eq!(batch.next_offset(), 44);
    assert_eq!(batch.len(), 84);
    batch.verify_crc().unwrap();
    assert_eq!(batch.control_type().unwrap(), None);
    assert!(!batch.has_offset_gaps(&LIMITS).unwrap());

    let records = collect(&batch);
    assert_eq!(
        records,
        vec![
            Record {
                attributes: 0,
                timestamp_delta: 0,
                offset_delta: 0,
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"hello")),
                headers: vec![RecordHeader {
                    key: Bytes::from_static(b"h"),
                    value: None
                }],
            },
            Record {
                attributes: 0,
                timestamp_delta: 5,
                offset_delta: 1,
                key: None,
                value: Some(Bytes::new()),
                headers: vec![],
            },
        ]
    );
    assert_eq!(
        records[1].timestamp(batch.base_timestamp()),
        1_700_000_000_005
    );
    assert_eq!(records[1].offset(batch.base_offset()), 43);
    assert_eq!(records[0].headers[0].key_str().unwrap(), "h");

    // The builder produces the same bytes for the same content.
    let mut builder = BatchBuilder::new(Compression::None)
        .base_offset(42)
        .partition_leader_epoch(7)
        .transactional(true)
        .producer(1000, 3, 17);
    builder.push(
        1_700_000_000_000,
        Some(b"k"),
        Some(b"hello"),
        &[RecordHeader::new("h", None)],
    );
    builder.push(1_700_000_000_005, None, Some(b""), &[]);
    assert_eq!(builder.len(), 2);
    assert_eq!(builder.estimated_size(), 84);
    assert_eq!(builder.build().unwrap().as_bytes(), batch.as_bytes());
}

#[test]
fn builder_header_fields() {
    let mut builder = BatchBuilder::new(Compression::Lz4)
        .base_offset(1_000_000)
        .partition_leader_epoch(12)
        .producer(77, 4, 300)
        .transactional(true)
        .timestamp_type(TimestampType::LogAppendTime);
    assert!(builder.is_empty());
    builder.push(500, None, Some(b"a"), &[]);
    builder.push(450, None, Some(b"b"), &[]);
    builder.push(900, None, Some(b"c"), &[]);
    let batch = builder.build().unwrap();
    assert_eq!(batch.base_offset(), 1_000_000);
    assert_eq!(batch.partition_leader_epoch(), 12);
    assert_eq!(batch.producer_id(), 77);
    assert_eq!(batch.producer_epoch(), 4);
    assert_eq!(batch.base_sequence(), 300);
    assert!(batch.is_transactional());
    assert_eq!(batch.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(batch.compression().unwrap(), Compression::Lz4);
    assert_eq!(batch.attributes(), 0x03 | 0x08 | 0x10);
    assert_eq!(batch.base_timestamp(), 500);
    assert_eq!(batch.max_timestamp(), 900);
    assert_eq!(batch.last_offset_delta(), 2);
    assert_eq!(batch.record_count(), 3);
    assert_eq!(batch.last_offset(), 1_000_002);
    assert_eq!(batch.next_offset(), 1_000_003);
    assert_eq!(batch.batch_length() as usize + 12, batch.len());
    batch.verify_crc().unwrap();
    let deltas: Vec<i64> = collect(&batch).iter().map(|r| r.timestamp_delta).collect();
    assert_eq!(deltas, [0, -50, 400]);

    let defaults = sample_builder(Compression::None, 1, 3).build().unwrap();
    assert_eq!(defaults.base_offset(), 0);
    assert_eq!(defaults.partition_leader_epoch(), -1);
    assert_eq!(
        (
            defaults.producer_id(),
            defaults.producer_epoch(),
            defaults.base_sequence()
        ),
        (-1, -1, -1)
    );
    assert!(!defaults.is_transactional());
    assert_eq!(defaults.timestamp_type(), TimestampType::CreateTime);
}

#[test]
fn empty_builder_is_an_error() {
    assert!(matches!(
        BatchBuilder::new(Compression::Gzip).build(),
        Err(RecordError::EmptyBatch { base_offset: None })
    ));
}

#[test]
fn crc_verify_and_mismatch() {
    let batch = sample_builder(Compression::None, 5, 20).build().unwrap();
    batch.verify_crc().unwrap();
    assert_eq!(batch.crc(), crc32c::crc32c(&batch.as_bytes()[21..]));

    // A flipped body byte is caught.
    let mut bytes = batch.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let corrupt = RecordBatch::parse(Bytes::from(bytes)).unwrap();
    match corrupt.verify_crc() {
        Err(RecordError::CrcMismatch {
            expected,
            actual,
            base_offset,
        }) => {
            assert_eq!(expected, batch.crc());
            assert_eq!(actual, crc32c::crc32c(&corrupt.as_bytes()[21..]));
            assert_ne!(expected, actual);
            assert_eq!(base_offset, 0);
        }
        other => panic!("expected CrcMismatch, got {other:?}"),
    }

    // Fields outside the CRC (base offset, leader epoch) do not affect it.
    let mut bytes = batch.as_bytes().to_vec();
    bytes[0..8].copy_from_slice(&123i64.to_be_bytes());
    bytes[12..16].copy_from_slice(&9i32.to_be_bytes());
    RecordBatch::parse(Bytes::from(bytes))
        .unwrap()
        .verify_crc()
        .unwrap();
}

#[test]
fn rewrite_outside_crc_keeps_crc_bytes() {
    for codec in Compression::ALL {
        let batch = sample_builder(codec, 10, 50).build().unwrap();
        let crc = batch.crc();
        let mut m = batch.clone().into_mut();
        m.set_base_offset(987_654);
        m.set_partition_leader_epoch(31);
        let out = m.freeze();
        assert_eq!(out.crc(), crc);
        assert_eq!(&out.as_bytes()[17..], &batch.as_bytes()[17..]);
        assert_eq!(out.base_offset(), 987_654);
        assert_eq!(out.partition_leader_epoch(), 31);
        out.verify_crc().unwrap();
    }
}

#[test]
fn rewrite_covered_fields_recomputes_crc() {
    for codec in Compression::ALL {
        let batch = sample_builder(codec, 10, 50)
            .producer(5, 1, 0)
            .transactional(true)
            .build()
            .unwrap();
        let mut m = batch.clone().into_mut();
        m.set_producer(-1, -1, -1);
        m.set_transactional(false);
        let out = m.freeze();
        assert_ne!(out.crc(), batch.crc());
        assert_eq!(out.crc(), crc32c::crc32c(&out.as_bytes()[21..]));
        out.verify_crc().unwrap();
        assert_eq!(
            (out.producer_id(), out.producer_epoch(), out.base_sequence()),
            (-1, -1, -1)
        );
        assert!(!out.is_transactional());
        assert_eq!(out.compression().unwrap(), codec);
        assert_eq!(collect(&out), collect(&batch));
        // Body untouched.
        assert_eq!(&out.as_bytes()[61..], &batch.as_bytes()[61..]);

        // Each setter alone.
        let mut m = batch.clone().into_mut();
        m.set_producer(6, 2, 100);
        let p = m.freeze();
        p.verify_crc().unwrap();
        assert_eq!(p.producer_id(), 6);
        let mut m = batch.clone().into_mut();
        m.set_transactional(false);
        let t = m.freeze();
        t.verify_crc().unwrap();
        assert_eq!(t.attributes(), batch.attributes() & !0x10);
    }
}

#[test]
fn rewrite_to_same_values_or_back_keeps_crc() {
    let batch = sample_builder(Compression::Zstd, 3, 10)
        .producer(5, 1, 0)
        .build()
        .unwrap();
    let mut m = batch.clone().into_mut();
    m.set_producer(5, 1, 0);
    m.set_transactional(false);
    let same = m.freeze();
    assert_eq!(same.as_bytes(), batch.as_bytes());

    let mut m = batch.clone().into_mut();
    m.set_producer(9, 9, 9);
    m.set_transactional(true);
    m.set_producer(5, 1, 0);
    m.set_transactional(false);
    assert_eq!(m.freeze().as_bytes(), batch.as_bytes());
}

#[test]
fn rewrite_never_launders_a_corrupt_crc() {
    let batch = sample_builder(Compression::None, 4, 10).build().unwrap();
    let mut bytes = batch.as_bytes().to_vec();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x40;
    let corrupt = RecordBatch::parse(Bytes::from(bytes)).unwrap();
    assert!(corrupt.verify_crc().is_err());
    let mut m = corrupt.into_mut();
    m.set_producer(1, 1, 1);
    m.set_transactional(true);
    let out = m.freeze();
    assert!(matches!(
        out.verify_crc(),
        Err(RecordError::CrcMismatch { .. })
    ));
}

#[test]
fn into_mut_is_zero_copy_when_unique() {
    let batch = sample_builder(Compression::None, 3, 100).build().unwrap();
    let bytes = Bytes::copy_from_slice(batch.as_bytes());
    let ptr = bytes.as_ptr();
    let unique = RecordBatch::parse(bytes).unwrap();
    let mut m = unique.into_mut();
    m.set_producer(1, 2, 3);
    let frozen = m.freeze();
    assert_eq!(
        frozen.as_bytes().as_ptr(),
        ptr,
        "unique bytes must not be copied"
    );
    frozen.verify_crc().unwrap();

    // Shared bytes are copied, and the other holder sees no change.
    let shared = Bytes::copy_from_slice(batch.as_bytes());
    let other = shared.clone();
    let mut m = RecordBatch::parse(shared).unwrap().into_mut();
    m.set_producer(1, 2, 3);
    let frozen = m.freeze();
    assert_ne!(frozen.as_bytes().as_ptr(), other.as_ptr());
    assert_eq!(&other[..], &batch.as_bytes()[..]);
    assert_eq!(frozen.producer_id(), 1);
}

#[test]
fn batch_split_from_a_fetch_buffer_is_rewritten_in_place_once_alone() {
    let a = sample_builder(Compression::None, 2, 10).build().unwrap();
    let b = sample_builder(Compression::Lz4, 2, 10).build().unwrap();
    let fetch = Bytes::from([a.as_bytes().to_vec(), b.as_bytes().to_vec()].concat());
    let second_at = fetch.as_ptr() as usize + a.len();
    let mut batches: Vec<RecordBatch> = split_batches(fetch).map(Result::unwrap).collect();
    let second = batches.pop().unwrap();
    // While the first batch still shares the buffer, rewriting copies.
    let copied = second.clone().into_mut().freeze();
    assert_ne!(copied.as_bytes().as_ptr() as usize, second_at);
    drop(copied);
    drop(batches);
    let mut m = second.into_mut();
    m.set_producer(-1, -1, -1);
    let out = m.freeze();
    assert_eq!(out.as_bytes().as_ptr() as usize, second_at);
    out.verify_crc().unwrap();
}

#[test]
fn split_batches_with_trailing_partial_batch() {
    let batches: Vec<RecordBatch> = [Compression::None, Compression::Gzip, Compression::Snappy]
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            sample_builder(c, 3 + i, 40)
                .base_offset(i as i64 * 100)
                .build()
                .unwrap()
        })
        .collect();
    let mut all = Vec::new();
    for b in &batches {
        all.extend_from_slice(b.as_bytes());
    }
    let complete_len = all.len();
    // Every cut point: complete batches come out, the rest is the tail.
    for cut in 0..=complete_len {
        let input = Bytes::copy_from_slice(&all[..cut]);
        let mut splitter = split_batches(input.clone());
        let got: Vec<RecordBatch> = splitter.by_ref().map(Result::unwrap).collect();
        let whole: usize = got.iter().map(RecordBatch::len).sum();
        assert_eq!(whole + splitter.truncated_tail(), cut);
        let expected = batches
            .iter()
            .scan(0, |end, b| {
                *end += b.len();
                Some(*end)
            })
            .filter(|&end| end <= cut)
            .count();
        assert_eq!(got.len(), expected, "cut at {cut}");
        for (g, b) in got.iter().zip(&batches) {
            assert_eq!(g.as_bytes(), b.as_bytes());
        }
        // Zero copy: slices of the input.
        if let Some(first) = got.first() {
            assert_eq!(first.as_bytes().as_ptr(), input.as_ptr());
        }
    }
    let mut splitter = split_batches(Bytes::from(all));
    assert_eq!(splitter.by_ref().count(), 3);
    assert_eq!(splitter.truncated_tail(), 0);
    assert_eq!(splitter.position(), complete_len);
}

#[test]
fn split_rejects_garbage() {
    let good = sample_builder(Compression::None, 2, 10).build().unwrap();
    // Legacy magic after a good batch: the good one, then the error with its base offset.
    let mut legacy = good.as_bytes().to_vec();
    let mut v1 = good.as_bytes().to_vec();
    v1[0..8].copy_from_slice(&55i64.to_be_bytes());
    v1[16] = 1;
    legacy.extend_from_slice(&v1);
    let results: Vec<_> = split_batches(Bytes::from(legacy)).collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(RecordError::UnsupportedMagic {
            magic: 1,
            base_offset: 55
        })
    ));

    // Lengths below the header, even before the magic is visible.
    for len in [-1i32, 0, 48] {
        let mut bad = good.as_bytes().to_vec();
        bad[8..12].copy_from_slice(&len.to_be_bytes());
        let mut it = split_batches(Bytes::from(bad.clone()));
        assert!(matches!(
            it.next(),
            Some(Err(RecordError::BadLength { .. }))
        ));
        assert!(it.next().is_none());
        let mut it = split_batches(Bytes::copy_from_slice(&bad[..14]));
        assert!(matches!(
            it.next(),
            Some(Err(RecordError::BadLength { .. }))
        ));
    }

    // A maximum turns an impossible length into an error rather than a tail.
    let mut huge = good.as_bytes().to_vec();
    huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut it = split_batches(Bytes::from(huge.clone()));
    assert!(it.next().is_none());
    assert_eq!(it.truncated_tail(), huge.len());
    let mut it = split_batches(Bytes::from(huge)).max_batch_len(1 << 20);
    assert!(matches!(
        it.next(),
        Some(Err(RecordError::BadLength { .. }))
    ));

    // Header sanity is checked for split batches too.
    let mut neg = good.as_bytes().to_vec();
    neg[57..61].copy_from_slice(&(-3i32).to_be_bytes());
    assert!(matches!(
        split_batches(Bytes::from(neg)).next(),
        Some(Err(RecordError::NegativeCount { count: -3, .. }))
    ));
}

#[test]
fn every_codec_round_trips() {
    for codec in Compression::ALL {
        // 40 KiB of records: more than one xerial snappy block and one LZ4 block.
        let builder = sample_builder(codec, 400, 100);
        let estimated = builder.estimated_size();
        let batch = builder.build().unwrap();
        let reparsed = RecordBatch::parse(batch.as_bytes().clone()).unwrap();
        reparsed.verify_crc().unwrap();
        assert_eq!(reparsed.compression().unwrap(), codec);
        assert_eq!(reparsed.record_count(), 400);
        if codec != Compression::None {
            assert!(reparsed.len() < estimated, "{codec} did not compress");
        }
        let records = collect(&reparsed);
        let uncompressed = collect(&sample_builder(Compression::None, 400, 100).build().unwrap());
        assert_eq!(records, uncompressed, "{codec}");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset_delta, i as i32);
            assert_eq!(r.key.as_deref(), Some(format!("key-{i}").as_bytes()));
        }
        assert!(!reparsed.has_offset_gaps(&LIMITS).unwrap());
    }
}

#[test]
fn snappy_xerial_and_raw_are_both_decoded() {
    let plain = sample_builder(Compression::None, 500, 100).build().unwrap();
    let records = &plain.as_bytes()[61..];
    let expected = collect(&plain);

    // Raw snappy, as librdkafka writes it.
    let raw = snap::raw::Encoder::new().compress_vec(records).unwrap();
    let batch = RecordBatch::parse(Bytes::from(raw_batch(0, 2, 499, 0, 500, &raw))).unwrap();
    assert_eq!(collect(&batch), expected);

    // xerial framing with uneven blocks, as Java writes it (block size is the writer's choice).
    let mut xerial = vec![
        0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1,
    ];
    for block in records.chunks(10_000) {
        let c = snap::raw::Encoder::new().compress_vec(block).unwrap();
        xerial.extend_from_slice(&(c.len() as i32).to_be_bytes());
        xerial.extend_from_slice(&c);
    }
    let batch = RecordBatch::parse(Bytes::from(raw_batch(0, 2, 499, 0, 500, &xerial))).unwrap();
    assert_eq!(collect(&batch), expected);

    // Built batches use the xerial framing.
    let built = sample_builder(Compression::Snappy, 500, 100)
        .build()
        .unwrap();
    assert!(built.as_bytes()[61..].starts_with(&[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0]));

    // A truncated xerial block is a decompression error.
    let cut = &xerial[..xerial.len() - 5];
    let batch = RecordBatch::parse(Bytes::from(raw_batch(0, 2, 499, 0, 500, cut))).unwrap();
    assert!(matches!(
        batch.records(&LIMITS),
        Err(RecordError::Decompress {
            codec: Compression::Snappy,
            ..
        })
    ));
}

#[test]
fn decompression_bombs_are_capped() {
    let zeros = vec![0u8; 8 << 20];
    let limits = DecodeLimits::default().with_max_decompressed_bytes(1 << 20);
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut compressed = Vec::new();
        compression::compress(codec, &zeros, &mut compressed).unwrap();
        assert!(
            compressed.len() < zeros.len() / 8,
            "{codec}: {}",
            compressed.len()
        );
        let batch = RecordBatch::parse(Bytes::from(raw_batch(
            0,
            codec.attribute_bits(),
            0,
            0,
            1,
            &compressed,
        )))
        .unwrap();
        match batch.records(&limits) {
            Err(RecordError::DecompressedTooLarge {
                codec: c, limit, ..
            }) => {
                assert_eq!(c, codec);
                assert_eq!(limit, 1 << 20);
            }
            other => panic!("{codec}: expected DecompressedTooLarge, got {other:?}"),
        }
    }
    // Raw snappy announcing a huge length is refused before allocating.
    let raw = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
    let batch = RecordBatch::parse(Bytes::from(raw_batch(0, 2, 0, 0, 1, &raw))).unwrap();
    assert!(matches!(
        batch.records(&limits),
        Err(RecordError::DecompressedTooLarge { .. })
    ));
    // Exactly at the cap is fine.
    let exact = DecodeLimits::default().with_max_decompressed_bytes(zeros.len());
    let mut compressed = Vec::new();
    compression::compress(Compression::Gzip, &zeros, &mut compressed).unwrap();
    let out =
        compression::decompress(Compression::Gzip, Bytes::from(compressed), &exact, 0).unwrap();
    assert_eq!(out.len(), zeros.len());
}

#[test]
fn zstd_window_limit_is_enforced() {
    // Streamed without a declared size, level 3 uses a 2 MiB window (log 21).
    let data: Vec<u8> = (0..(256u32 << 10))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let compressed = zstd::stream::encode_all(&data[..], 3).unwrap();
    let tight = DecodeLimits {
        max_zstd_window_log: 12,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        compression::decompress(
            Compression::Zstd,
            Bytes::from(compressed.clone()),
            &tight,
            0
        ),
        Err(RecordError::Decompress { .. })
    ));
    let out =
        compression::decompress(Compression::Zstd, Bytes::from(compressed), &LIMITS, 0).unwrap();
    assert_eq!(out, data);
}

#[test]
fn renumbers_a_gapped_batch() {
    for codec in Compression::ALL {
        let source = collect(&sample_builder(Compression::None, 5, 30).build().unwrap());
        let mut gapped = BatchBuilder::new(codec)
            .base_offset(1000)
            .partition_leader_epoch(3)
            .producer(42, 7, 11)
            .transactional(true)
            .base_timestamp(1_700_000_000_000);
        for (r, delta) in source.iter().zip([0, 3, 4, 9, 20]) {
            let mut r = r.clone();
            r.offset_delta = delta;
            gapped
                .push_record_with_offset_delta(1_700_000_000_000, &r)
                .unwrap();
        }
        let mut dup = source[0].clone();
        dup.offset_delta = 20;
        assert!(matches!(
            gapped.push_record_with_offset_delta(0, &dup),
            Err(RecordError::OffsetDeltaNotIncreasing {
                previous: 20,
                offset_delta: 20
            })
        ));
        let gapped = gapped.build().unwrap();
        assert_eq!(gapped.last_offset_delta(), 20);
        assert_eq!(gapped.record_count(), 5);
        assert!(gapped.has_offset_gaps(&LIMITS).unwrap());

        let fixed = gapped.renumbered(&LIMITS).unwrap();
        fixed.verify_crc().unwrap();
        assert!(!fixed.has_offset_gaps(&LIMITS).unwrap());
        assert_eq!(fixed.compression().unwrap(), codec);
        assert_eq!(fixed.base_offset(), 1000);
        assert_eq!(fixed.partition_leader_epoch(), 3);
        assert_eq!(fixed.attributes(), gapped.attributes());
        assert_eq!(
            (
                fixed.producer_id(),
                fixed.producer_epoch(),
                fixed.base_sequence()
            ),
            (42, 7, 11)
        );
        assert_eq!(fixed.base_timestamp(), gapped.base_timestamp());
        assert_eq!(fixed.max_timestamp(), gapped.max_timestamp());
        assert_eq!(fixed.last_offset_delta(), 4);
        assert_eq!(fixed.record_count(), 5);
        let renumbered = collect(&fixed);
        for (i, (new, old)) in renumbered.iter().zip(&source).enumerate() {
            assert_eq!(new.offset_delta, i as i32);
            assert_eq!(
                Record {
                    offset_delta: old.offset_delta,
                    ..new.clone()
                },
                *old
            );
        }
    }
}

#[test]
fn inner_deltas_out_of_sequence_are_gaps() {
    // lastOffsetDelta + 1 == recordCount, but the inner deltas are 0, 2.
    let mut records = raw_record(0, Some(b"a"), Some(b"1"));
    records.extend(raw_record(2, Some(b"b"), Some(b"2")));
    let batch = RecordBatch::parse(Bytes::from(raw_batch(0, 0, 1, 0, 2, &records))).unwrap();
    assert!(batch.has_offset_gaps(&LIMITS).unwrap());
    let fixed = batch.renumbered(&LIMITS).unwrap();
    assert!(!fixed.has_offset_gaps(&LIMITS).unwrap());
    let deltas: Vec<i32> = collect(&fixed).iter().map(|r| r.offset_delta).collect();
    assert_eq!(deltas, [0, 1]);
    // Timestamps kept: raw_record writes tsDelta = 10 * offsetDelta.
    let ts: Vec<i64> = collect(&fixed).iter().map(|r| r.timestamp_delta).collect();
    assert_eq!(ts, [0, 20]);
}

#[test]
fn renumbering_an_empty_batch_is_an_error() {
    let empty = RecordBatch::parse(Bytes::from(raw_batch(77, 0, 4, 0, 0, &[]))).unwrap();
    assert!(empty.has_offset_gaps(&LIMITS).unwrap());
    assert!(matches!(
        empty.renumbered(&LIMITS),
        Err(RecordError::EmptyBatch {
            base_offset: Some(77)
        })
    ));
}

#[test]
fn control_batches() {
    for (type_id, expected) in [
        (0i16, ControlType::Abort),
        (1, ControlType::Commit),
        (5, ControlType::Unknown(5)),
    ] {
        let key = [0i16.to_be_bytes(), type_id.to_be_bytes()].concat();
        let value = [0i16.to_be_bytes().to_vec(), 9i32.to_be_bytes().to_vec()].concat();
        let mut b = BatchBuilder::new(Compression::None)
            .producer(8, 0, -1)
            .transactional(true)
            .control(true);
        b.push(1, Some(&key), Some(&value), &[]);
        let batch = b.build().unwrap();
        assert!(batch.is_control());
        assert_eq!(batch.control_type().unwrap(), Some(expected));
        assert_eq!(expected.type_id(), type_id);
    }
    let mut b = BatchBuilder::new(Compression::None).control(true);
    b.push(1, Some(&[0, 0, 0]), None, &[]);
    assert!(matches!(
        b.build().unwrap().control_type(),
        Err(RecordError::InvalidRecord { .. })
    ));
    let mut b = BatchBuilder::new(Compression::None).control(true);
    b.push(1, None, None, &[]);
    assert!(b.build().unwrap().control_type().is_err());
    let data = sample_builder(Compression::None, 1, 1).build().unwrap();
    assert_eq!(data.control_type().unwrap(), None);
}

#[test]
fn delete_horizon_and_unknown_bits_survive_renumbering() {
    let mut records = raw_record(0, None, Some(b"x"));
    records.extend(raw_record(5, None, None));
    let zstd_records = zstd::stream::encode_all(&records[..], 3).unwrap();
    let batch = RecordBatch::parse(Bytes::from(raw_batch(
        9,
        0x40 | 0x04,
        5,
        123,
        2,
        &zstd_records,
    )))
    .unwrap();
    assert!(batch.has_delete_horizon());
    let fixed = batch.renumbered(&LIMITS).unwrap();
    assert_eq!(fixed.attributes(), 0x44);
    assert_eq!(fixed.base_timestamp(), 123);
    assert_eq!(fixed.last_offset_delta(), 1);
    let r = collect(&fixed);
    assert_eq!(r[1].timestamp_delta, 50);
    assert_eq!(r[1].value, None);
}

#[test]
fn malformed_batches_are_rejected() {
    let good = sample_builder(Compression::None, 3, 10).build().unwrap();
    let g = good.as_bytes().to_vec();
    let parse = |b: Vec<u8>| RecordBatch::parse(Bytes::from(b));

    assert!(matches!(
        parse(g[..10].to_vec()),
        Err(RecordError::Truncated {
            base_offset: Some(0),
            ..
        })
    ));
    assert!(matches!(
        parse(g[..4].to_vec()),
        Err(RecordError::Truncated {
            base_offset: None,
            ..
        })
    ));
    assert!(matches!(
        parse(g[..g.len() - 1].to_vec()),
        Err(RecordError::Truncated { .. })
    ));
    let mut longer = g.clone();
    longer.push(0);
    assert!(matches!(parse(longer), Err(RecordError::BadLength { .. })));
    for len in [i32::MIN, -1, 0, 48] {
        let mut b = g.clone();
        b[8..12].copy_from_slice(&len.to_be_bytes());
        assert!(
            matches!(parse(b), Err(RecordError::BadLength { batch_length, .. }) if batch_length == len)
        );
    }
    for magic in [0u8, 1, 3, 0xff] {
        let mut b = g.clone();
        b[16] = magic;
        assert!(matches!(
            parse(b),
            Err(RecordError::UnsupportedMagic { magic: m, base_offset: 0 }) if m == magic as i8
        ));
    }
    let mut b = g.clone();
    b[57..61].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        parse(b),
        Err(RecordError::NegativeCount { count: -1, .. })
    ));
    let mut b = g.clone();
    b[57..61].copy_from_slice(&1_000_000i32.to_be_bytes());
    assert!(matches!(
        parse(b),
        Err(RecordError::CountExceedsBytes {
            count: 1_000_000,
            ..
        })
    ));
    let mut b = g.clone();
    b[23..27].copy_from_slice(&(-2i32).to_be_bytes());
    assert!(matches!(
        parse(b),
        Err(RecordError::InvalidHeader {
            field: "lastOffsetDelta",
            value: -2,
            ..
        })
    ));

    // Unknown codec: parses, but compression() and records() say which.
    for codec in 5..=7 {
        let mut b = g.clone();
        b[22] = codec;
        let batch = parse(b).unwrap();
        assert!(
            matches!(batch.compression(), Err(RecordError::UnknownCodec { codec: c, .. }) if c == codec)
        );
        assert!(batch.records(&LIMITS).is_err());
    }

    // A compressed count larger than the decompressed bytes.
    let gz = collect(&good);
    assert_eq!(gz.len(), 3);
    let mut compressed = Vec::new();
    compression::compress(Compression::Gzip, &g[61..], &mut compressed).unwrap();
    let batch = parse(raw_batch(0, 1, 2, 0, 10_000, &compressed)).unwrap();
    assert!(matches!(
        batch.records(&LIMITS),
        Err(RecordError::CountExceedsBytes { .. })
    ));
    // Corrupt compressed data.
    let batch = parse(raw_batch(0, 1, 2, 0, 1, b"not gzip at all")).unwrap();
    assert!(matches!(
        batch.records(&LIMITS),
        Err(RecordError::Decompress {
            codec: Compression::Gzip,
            ..
        })
    ));
}

fn record_errors(records: &[u8], count: i32) -> RecordError {
    let batch = RecordBatch::parse(Bytes::from(raw_batch(
        0,
        0,
        count.max(1) - 1,
        0,
        count,
        records,
    )))
    .unwrap();
    let mut it = batch.records(&LIMITS).unwrap();
    let err = it
        .by_ref()
        .find_map(Result::err)
        .expect("expected a record error");
    assert!(it.next().is_none(), "iterator must stop after an error");
    // Locating records without decoding them checks the same and fails the same way.
    let mut raw = batch.records(&LIMITS).unwrap();
    let raw_err = std::iter::from_fn(|| raw.next_raw())
        .find_map(Result::err)
        .expect("next_raw must fail too");
    assert_eq!(format!("{raw_err:?}"), format!("{err:?}"));
    assert!(
        raw.next_raw().is_none(),
        "next_raw must stop after an error"
    );
    err
}

#[test]
fn malformed_records_are_rejected() {
    let ok = raw_record(0, Some(b"k"), Some(b"v"));
    // Varint overflow in the record length.
    let mut bad = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    bad.extend_from_slice(&[0; 8]);
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::VarintOverflow { position: 0, .. }
    ));
    // Varlong overflow in the timestamp delta.
    let mut bad = vec![0x18, 0x00];
    bad.extend_from_slice(&[0xff; 10]);
    bad.push(0);
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::VarintOverflow { position: 2, .. }
    ));
    // Negative record length.
    let mut bad = vec![0x01];
    bad.extend_from_slice(&[0; 7]);
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "negative record length",
            ..
        }
    ));
    // Record length beyond the bytes.
    let mut bad = ok.clone();
    bad[0] = 0x7e;
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord { .. }
    ));
    // Key length below -1.
    let bad = [0x0c, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "key length below -1",
            ..
        }
    ));
    // Key longer than the record.
    let bad = [0x0c, 0x00, 0x00, 0x00, 0x7e, 0x00, 0x00];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "key longer than the record",
            ..
        }
    ));
    // Negative header count, and a header count beyond the bytes.
    let bad = [0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "negative header count",
            ..
        }
    ));
    let bad = [0x0c, 0x00, 0x00, 0x00, 0x01, 0x01, 0x7e];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "header count exceeds the record's bytes",
            ..
        }
    ));
    // Null header key.
    let bad = [0x10, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x01, 0x01];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord {
            reason: "null header key",
            ..
        }
    ));
    // Length says more than the fields use.
    let bad = [0x0e, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00];
    assert!(matches!(
        record_errors(&bad, 1),
        RecordError::InvalidRecord { .. }
    ));
    // Fewer records than declared.
    let mut two = ok.clone();
    two.extend_from_slice(&ok);
    two.extend_from_slice(&[0; 7]);
    assert!(matches!(
        record_errors(&two, 3),
        RecordError::InvalidRecord { index: 2, .. }
    ));
    // More bytes than the declared records.
    let mut extra = ok.clone();
    extra.extend_from_slice(&ok);
    match record_errors(&extra, 1) {
        RecordError::TrailingBytes {
            trailing, count: 1, ..
        } => assert_eq!(trailing, ok.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn decode_limits_and_names() {
    assert_eq!(DecodeLimits::default().max_decompressed_bytes, 64 << 20);
    assert_eq!(
        DecodeLimits::for_max_message_bytes(1_048_588).max_decompressed_bytes,
        1_048_588 * 64
    );
    assert_eq!(
        DecodeLimits::for_max_message_bytes(1000).max_decompressed_bytes,
        16 << 20
    );
    assert_eq!(
        DecodeLimits::for_max_message_bytes(usize::MAX).max_decompressed_bytes,
        usize::MAX
    );
    for c in Compression::ALL {
        assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        assert_eq!(
            Compression::from_attributes(c.attribute_bits() | 0x38),
            Some(c)
        );
        assert_eq!(Compression::from_id(c.id()), Some(c));
    }
    assert_eq!("ZSTD".parse::<Compression>().unwrap(), Compression::Zstd);
    assert!("brotli".parse::<Compression>().is_err());
    assert_eq!(Compression::from_attributes(5), None);
}

fn arb_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..64))
}

type ArbRecord = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn arb_record() -> impl Strategy<Value = ArbRecord> {
    (
        any::<i64>(),
        arb_bytes(),
        arb_bytes(),
        prop::collection::vec(("[a-z\u{e9}\u{4e2d}]{0,8}", arb_bytes()), 0..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn build_parse_round_trip(
        codec in prop::sample::select(Compression::ALL.to_vec()),
        records in prop::collection::vec(arb_record(), 1..24),
        producer in (any::<i64>(), any::<i16>(), any::<i32>()),
        base_offset in 0i64..i64::MAX / 2,
        transactional: bool,
    ) {
        let mut b = BatchBuilder::new(codec)
            .base_offset(base_offset)
            .producer(producer.0, producer.1, producer.2)
            .transactional(transactional);
        let mut expected = Vec::new();
        for (ts, key, value, headers) in &records {
            let headers: Vec<RecordHeader> = headers
                .iter()
                .map(|(k, v)| RecordHeader::new(k, v.as_deref()))
                .collect();
            b.push(*ts, key.as_deref(), value.as_deref(), &headers);
            expected.push((*ts, key.clone(), value.clone(), headers));
        }
        let built = b.build().unwrap();
        let batch = RecordBatch::parse(built.into_bytes()).unwrap();
        batch.verify_crc().unwrap();
        prop_assert_eq!(batch.compression().unwrap(), codec);
        prop_assert_eq!(batch.record_count() as usize, records.len());
        prop_assert_eq!(batch.base_offset(), base_offset);
        prop_assert_eq!(batch.producer_id(), producer.0);
        prop_assert_eq!(batch.is_transactional(), transactional);
        prop_assert_eq!(batch.max_timestamp(), records.iter().map(|r| r.0).max().unwrap());
        let decoded = collect(&batch);
        prop_assert_eq!(decoded.len(), expected.len());
        for (i, (r, (ts, key, value, headers))) in decoded.iter().zip(&expected).enumerate() {
            prop_assert_eq!(r.offset_delta, i as i32);
            prop_assert_eq!(r.timestamp(batch.base_timestamp()), *ts);
            prop_assert_eq!(r.key.as_deref(), key.as_deref());
            prop_assert_eq!(r.value.as_deref(), value.as_deref());
            prop_assert_eq!(&r.headers, headers);
        }
        prop_assert!(!batch.has_offset_gaps(&LIMITS).unwrap());

        // Rewrite keeps the CRC valid and the records intact.
        let mut m = batch.clone().into_mut();
        m.set_producer(-1, -1, -1);
        m.set_transactional(!transactional);
        m.set_base_offset(7);
        let rewritten = m.freeze();
        rewritten.verify_crc().unwrap();
        prop_assert_eq!(collect(&rewritten), decoded);
    }

    #[test]
    fn copying_raw_records_equals_decoding_and_encoding_them(
        batches in prop::collection::vec(
            (any::<i64>(), prop::collection::vec(arb_record(), 1..12)),
            1..4,
        ),
    ) {
        let mut decoded = BatchBuilder::new(Compression::None);
        let mut raw = BatchBuilder::with_capacity(Compression::None, 64);
        for (base_ts, records) in &batches {
            let mut b = BatchBuilder::new(Compression::None).base_timestamp(*base_ts);
            for (ts, key, value, headers) in records {
                let headers: Vec<RecordHeader> = headers
                    .iter()
                    .map(|(k, v)| RecordHeader::new(k, v.as_deref()))
                    .collect();
                b.push(*ts, key.as_deref(), value.as_deref(), &headers);
            }
            let batch = RecordBatch::parse(b.build().unwrap().into_bytes()).unwrap();
            for r in batch.records(&LIMITS).unwrap() {
                decoded.push_record(batch.base_timestamp(), &r.unwrap());
            }
            let mut it = batch.records(&LIMITS).unwrap();
            let data = it.data().clone();
            while let Some(r) = it.next_raw() {
                raw.push_raw(batch.base_timestamp(), &r.unwrap(), &data);
            }
        }
        let (a, b) = (decoded.build().unwrap(), raw.build().unwrap());
        prop_assert_eq!(a.into_bytes(), b.into_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        for batch in split_batches(Bytes::from(data.clone())).flatten() {
            let _ = batch.verify_crc();
            if let Ok(records) = batch.records(&LIMITS) {
                for r in records { let _ = r; }
            }
            if let Ok(mut records) = batch.records(&LIMITS) {
                let data = records.data().clone();
                let mut b = BatchBuilder::new(Compression::None);
                while let Some(Ok(r)) = records.next_raw() {
                    b.push_raw(0, &r, &data);
                }
            }
        }
        if let Ok(batch) = RecordBatch::parse(Bytes::from(data)) {
            let _ = batch.control_type();
            let _ = batch.renumbered(&LIMITS);
        }
    }
}

/// Writes the fuzz seed corpus under `fuzz/seeds/<target>/` from batches built here, one per
/// codec and shape. Run with
/// `cargo test -p protocol-client --lib record::tests::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes files: run by hand to regenerate fuzz/seeds"]
fn write_fuzz_seeds() {
    use std::path::PathBuf;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let mut batches: Vec<(String, RecordBatch)> = Vec::new();
    for codec in Compression::ALL {
        batches.push((
            format!("{codec}-small"),
            sample_builder(codec, 3, 16).build().unwrap(),
        ));
        batches.push((
            format!("{codec}-idempotent-txn"),
            sample_builder(codec, 20, 100)
                .producer(4000, 2, 77)
                .transactional(true)
                .base_offset(12_345)
                .partition_leader_epoch(9)
                .build()
                .unwrap(),
        ));
        let mut nulls = BatchBuilder::new(codec).timestamp_type(TimestampType::LogAppendTime);
        nulls.push(1, None, None, &[]);
        nulls.push(
            0,
            Some(b""),
            None,
            &[
                RecordHeader::new("h", None),
                RecordHeader::new("", Some(b"")),
            ],
        );
        batches.push((format!("{codec}-nulls"), nulls.build().unwrap()));
        let source = collect(&sample_builder(Compression::None, 4, 8).build().unwrap());
        let mut gapped = BatchBuilder::new(codec).base_timestamp(1_700_000_000_000);
        for (r, delta) in source.iter().zip([0, 2, 5, 6]) {
            let mut r = r.clone();
            r.offset_delta = delta;
            gapped
                .push_record_with_offset_delta(1_700_000_000_000, &r)
                .unwrap();
        }
        batches.push((format!("{codec}-gapped"), gapped.build().unwrap()));
    }
    let mut marker = BatchBuilder::new(Compression::None)
        .producer(4000, 2, -1)
        .transactional(true)
        .control(true);
    marker.push(5, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 3]), &[]);
    batches.push(("commit-marker".into(), marker.build().unwrap()));

    let mut concatenated = Vec::new();
    for (_, b) in &batches {
        concatenated.extend_from_slice(b.as_bytes());
    }
    let with_tail = {
        let mut v = concatenated.clone();
        v.extend_from_slice(&batches[1].1.as_bytes()[..40]);
        v
    };
    for target in ["record_split_view", "record_rewrite", "record_rebuild"] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, b) in &batches {
            std::fs::write(dir.join(format!("{name}.bin")), b.as_bytes()).unwrap();
        }
        std::fs::write(dir.join("all-batches.bin"), &concatenated).unwrap();
        std::fs::write(dir.join("all-batches-partial-tail.bin"), &with_tail).unwrap();
    }
    // record_decode: [attributes, recordCount] + the records section, per codec; raw snappy
    // (librdkafka's framing) too.
    let dir = root.join("record_decode");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, b) in &batches {
        let mut seed = vec![b.attributes() as u8, b.record_count() as u8];
        seed.extend_from_slice(&b.as_bytes()[61..]);
        std::fs::write(dir.join(format!("{name}.bin")), seed).unwrap();
    }
    let plain = sample_builder(Compression::None, 20, 100).build().unwrap();
    let mut raw_snappy = vec![2u8, 20];
    raw_snappy.extend(
        snap::raw::Encoder::new()
            .compress_vec(&plain.as_bytes()[61..])
            .unwrap(),
    );
    std::fs::write(dir.join("snappy-raw.bin"), raw_snappy).unwrap();
}
