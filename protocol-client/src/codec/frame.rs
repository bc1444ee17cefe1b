//! Kafka's framing: every request and response is an `INT32` size followed by that many bytes
//! (<https://kafka.apache.org/protocol#protocol_common>).
//!
//! [`decode_frame`] checks the announced size against a maximum *before* reserving memory, so a
//! hostile or corrupt size (CVE-2022-34917 style) cannot make us allocate. Incomplete input is
//! `Ok(None)`, never an error.

use bytes::{Buf, Bytes, BytesMut};

use super::CodecError;

/// Default largest response frame accepted: 100 MiB (the Java client's `fetch.max.bytes` is 50 MiB;
/// a response may exceed the request's `max_bytes` by one batch).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;

/// Takes one complete frame's payload (without the size prefix) off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed; in that case it reserves room for the announced
/// frame (only after checking it against `max`) so the next read can fill it in one go.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, CodecError> {
    let Some(len) = announced_len(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The payload size the frame at the front of `buf` announces, checked against `max`; `None`
/// until the 4-byte size has arrived.
pub fn announced_len(buf: &[u8], max: usize) -> Result<Option<usize>, CodecError> {
    let Some(size) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    if len < 0 {
        return Err(CodecError::NegativeFrameLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(CodecError::FrameTooLarge { len, max });
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_is_none_and_complete_is_split() {
        let mut b = BytesMut::new();
        assert!(decode_frame(&mut b, 100).unwrap().is_none());
        b.extend_from_slice(&[0, 0, 0]);
        assert!(decode_frame(&mut b, 100).unwrap().is_none());
        b.extend_from_slice(&[3, 1, 2]);
        assert!(
            decode_frame(&mut b, 100).unwrap().is_none(),
            "3 of 4 payload bytes"
        );
        // the rest of frame 1, then frame 2 in part
        b.extend_from_slice(&[3, 0, 0, 0, 1, 9, 0]);
        assert_eq!(&decode_frame(&mut b, 100).unwrap().unwrap()[..], &[1, 2, 3]);
        assert_eq!(&decode_frame(&mut b, 100).unwrap().unwrap()[..], &[9]);
        assert!(decode_frame(&mut b, 100).unwrap().is_none());
        assert_eq!(&b[..], &[0]);
    }

    #[test]
    fn zero_length_frame_is_a_frame() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(decode_frame(&mut b, 10).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn oversized_and_negative_lengths_fail_before_allocating() {
        let mut b = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        let cap = b.capacity();
        assert!(matches!(
            decode_frame(&mut b, 1 << 20),
            Err(CodecError::FrameTooLarge { .. })
        ));
        assert_eq!(b.capacity(), cap, "no reservation for a rejected size");
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert!(matches!(
            decode_frame(&mut b, 1 << 20),
            Err(CodecError::NegativeFrameLength(-2))
        ));
    }
}
