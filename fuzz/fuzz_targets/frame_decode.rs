//! The wire client's response path: framing (`codec::frame::decode_frame`), the response header
//! (`ResponseFrame::parse`) and body decoding (`codec::header::decode_response`) for the
//! responses Strait reads on its hot and control paths.
//!
//! Input layout (see `fuzz/README.md`):
//! - byte 0 chooses the maximum frame size: `(b & 0x3f) << (6 * (b >> 6))`, so 0..=63 bytes up to
//!   about 16 MiB (`0xff`);
//! - byte 1 (low 4 bits) is the number `k` of chunk-size bytes that follow; the stream is fed to
//!   the decoder in chunks of those sizes, cyclically (`c < 0x80`: `c + 1` bytes, else
//!   `(c - 0x7f)` KiB); with `k = 0` the whole stream arrives at once;
//! - the rest is the byte stream a broker sent: `INT32` size + payload frames (Kafka protocol
//!   guide, "Common Request and Response Structure").
//!
//! Asserts: no panic; frames come out exactly as an independent parse of the stream says (same
//! payloads, in order, never longer than the maximum, errors at the same frame); incomplete input
//! is `Ok(None)` without consuming anything and reserves room for an announced frame; an error
//! consumes and reserves nothing; the frames re-encoded back to back decode identically; a frame's
//! correlation id is its first four bytes; decoded Fetch records are slices of the frame (zero
//! copy), and they are split into batches as the fetcher does.
//!
//! # Regression
//!
//! kafka-protocol 0.18 reserved `Vec::with_capacity(count)` from the wire count before decoding
//! any element, so a 16-byte frame could abort the process (found here; reproducer in
//! `fuzz/regressions/frame_decode/`). Strait uses a vendored copy that bounds the reservation
//! (`protocol-client/vendor/kafka-protocol/VENDORED.md`); this target runs with the plain system
//! allocator, so a regression shows up as an out-of-memory crash again.
#![no_main]


use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, FetchRequest, FindCoordinatorRequest, MetadataRequest, OffsetFetchRequest,
    ProduceRequest,
};
use kafka_protocol::protocol::Request;
use libfuzzer_sys::fuzz_target;
use protocol_client::codec::{decode_frame, decode_response, CodecError, ResponseFrame};
use protocol_client::record::split_batches;

/// What an independent reading of the stream says the decoder must produce.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The stream ends inside a frame (or inside a size prefix) after `tail` bytes.
    Incomplete { tail: usize },
    /// A frame announced a negative size.
    Negative(i32),
    /// A frame announced more than the maximum.
    TooLarge(usize),
}

/// `decode_response` for `R`.
fn decode_body<R: Request>(rest: &Bytes, version: i16) -> Option<R::Response> {
    decode_response::<R>(rest.clone(), version).ok()
}

fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &stream[at..];
        if rest.len() < 4 {
            return (frames, End::Incomplete { tail: rest.len() });
        }
        let len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len < 0 {
            return (frames, End::Negative(len));
        }
        let len = len as usize;
        if len > max {
            return (frames, End::TooLarge(len));
        }
        if rest.len() - 4 < len {
            return (frames, End::Incomplete { tail: rest.len() });
        }
        frames.push(&rest[4..4 + len]);
        at += 4 + len;
    }
}

fn chunk_len(c: u8) -> usize {
    if c < 0x80 {
        usize::from(c) + 1
    } else {
        usize::from(c - 0x7f) * 1024
    }
}

/// Decodes everything buffered; returns `Err` once the decoder failed (the connection would be
/// closed then).
fn drain(buf: &mut BytesMut, max: usize, out: &mut Vec<Bytes>) -> Result<(), CodecError> {
    loop {
        // Cheap snapshot (the buffer may hold a large frame fed one byte at a time).
        let len_before = buf.len();
        let head: [u8; 8] = std::array::from_fn(|i| buf.get(i).copied().unwrap_or(0));
        let unchanged = |buf: &BytesMut| {
            buf.len() == len_before
                && head
                    .iter()
                    .take(len_before)
                    .zip(buf.iter())
                    .all(|(a, b)| a == b)
        };
        let capacity = buf.capacity();
        match decode_frame(buf, max) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max, "frame of {} > max {max}", frame.len());
                assert_eq!(buf.len(), len_before - 4 - frame.len());
                out.push(frame);
            }
            Ok(None) => {
                assert!(unchanged(buf), "incomplete input must not be consumed");
                if buf.len() >= 4 {
                    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    assert!(len >= 0 && len as usize <= max);
                    assert!(buf.len() < 4 + len as usize);
                    assert!(
                        buf.capacity() >= 4 + len as usize,
                        "room reserved for the announced frame"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                assert!(unchanged(buf), "a rejected frame is not consumed");
                assert_eq!(
                    buf.capacity(),
                    capacity,
                    "nothing reserved for a rejected size"
                );
                return Err(e);
            }
        }
    }
}

/// Body decoding of one frame's rest for the responses the client reads.
fn decode_bodies(rest: &Bytes, correlation_id: i32) {
    // The versions Strait negotiates with current brokers, and an older Fetch chosen by the
    // correlation id (non-flexible versions have a different layout).
    if let Some(resp) = decode_body::<FetchRequest>(rest, 12) {
        check_fetch_records(rest, &resp);
    }
    let old_fetch = [4i16, 7, 11][correlation_id.rem_euclid(3) as usize];
    if let Some(resp) = decode_body::<FetchRequest>(rest, old_fetch) {
        check_fetch_records(rest, &resp);
    }
    let _ = decode_body::<ProduceRequest>(rest, 9);
    let _ = decode_body::<MetadataRequest>(rest, 12);
    let _ = decode_body::<ApiVersionsRequest>(rest, 3);
    let _ = decode_body::<FindCoordinatorRequest>(rest, 4);
    let _ = decode_body::<OffsetFetchRequest>(rest, 8);
}

fn check_fetch_records(rest: &Bytes, resp: &kafka_protocol::messages::FetchResponse) {
    let range = rest.as_ptr() as usize..rest.as_ptr() as usize + rest.len() + 1;
    for topic in &resp.responses {
        for p in &topic.partitions {
            let Some(records) = &p.records else { continue };
            if !records.is_empty() {
                let start = records.as_ptr() as usize;
                assert!(
                    range.contains(&start) && range.contains(&(start + records.len())),
                    "fetched records are a slice of the response frame"
                );
            }
            let mut splitter = split_batches(records.clone());
            let mut consumed = 0;
            let mut failed = false;
            for batch in splitter.by_ref() {
                match batch {
                    Ok(b) => consumed += b.len(),
                    Err(_) => failed = true,
                }
            }
            if !failed {
                assert_eq!(consumed + splitter.truncated_tail(), records.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [max_sel, k, rest @ ..] = data else {
        return;
    };
    let max = usize::from(max_sel & 0x3f) << (6 * (max_sel >> 6));
    let k = usize::from(k & 0x0f).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let (want_frames, want_end) = reference(stream, max);

    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut result = Ok(());
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() && result.is_ok() {
        let n = if sizes.is_empty() {
            stream.len()
        } else {
            chunk_len(sizes[i % sizes.len()])
        };
        i += 1;
        let end = (at + n).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        result = drain(&mut buf, max, &mut frames);
    }
    if stream.is_empty() {
        result = drain(&mut buf, max, &mut frames);
    }

    // Same frames as the reference reading, and the same ending.
    assert_eq!(frames.len(), want_frames.len());
    for (got, want) in frames.iter().zip(&want_frames) {
        assert_eq!(&got[..], *want);
    }
    match (&result, &want_end) {
        (Ok(()), End::Incomplete { tail }) => assert_eq!(buf.len(), *tail),
        (Err(CodecError::NegativeFrameLength(n)), End::Negative(m)) => assert_eq!(n, m),
        (Err(CodecError::FrameTooLarge { len, max: m }), End::TooLarge(l)) => {
            assert_eq!((len, *m), (l, max));
        }
        (got, want) => panic!("decoder ended with {got:?}, reference with {want:?}"),
    }

    // The frames written back to back decode identically in one go.
    let mut again = BytesMut::new();
    for f in &frames {
        again.extend_from_slice(&(f.len() as i32).to_be_bytes());
        again.extend_from_slice(f);
    }
    let mut back = Vec::new();
    drain(&mut again, max, &mut back).expect("re-encoded frames decode");
    assert_eq!(back, frames);
    assert!(again.is_empty());

    for frame in frames {
        match ResponseFrame::parse(frame.clone()) {
            Ok(r) => {
                assert!(frame.len() >= 4);
                assert_eq!(
                    r.correlation_id,
                    i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]])
                );
                assert_eq!(r.rest, frame.slice(4..));
                decode_bodies(&r.rest, r.correlation_id);
            }
            Err(CodecError::ShortResponse(n)) => assert!(n == frame.len() && n < 4),
            Err(e) => panic!("unexpected response header error: {e}"),
        }
    }
});
