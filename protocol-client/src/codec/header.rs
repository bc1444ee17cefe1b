//! Request and response headers, and whole-message encoding.
//!
//! Request header v1 = api key, api version, correlation id, client id (nullable string); v2 adds
//! a tagged-field section. Response header v0 = correlation id; v1 adds tagged fields. Which one
//! an API version uses comes from its schema (`flexibleVersions`, KIP-482), as given by
//! `kafka-protocol`; ApiVersions responses always use header v0 so a client can read them
//! whatever version it asked for.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::CodecError;

/// Writes request header fields (v1 or v2) for `api`/`version`.
pub fn put_request_header(
    buf: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<(), CodecError> {
    let header_version = api.request_header_version(version);
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    header
        .encode(buf, header_version)
        .map_err(|e| CodecError::Encode {
            api,
            version,
            message: format!("request header: {e}"),
        })
}

/// Encodes a whole request frame (size prefix, header, body) with `kafka-protocol`.
///
/// Use [`super::produce`] for Produce requests on the hot path: this copies record bytes.
pub fn encode_request<R: Request>(
    correlation_id: i32,
    client_id: &str,
    version: i16,
    request: &R,
) -> Result<Bytes, CodecError> {
    let api = api_key_of::<R>();
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    put_request_header(&mut buf, api, version, correlation_id, client_id)?;
    request
        .encode(&mut buf, version)
        .map_err(|e| CodecError::Encode {
            api,
            version,
            message: e.to_string(),
        })?;
    let size = buf.len() - 4;
    let size = i32::try_from(size).map_err(|_| CodecError::TooLong {
        what: "request",
        len: size,
    })?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The `ApiKey` of a request type.
pub fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("kafka-protocol request types have known API keys")
}

/// A response frame whose correlation id has been read; the header's tagged fields and the body
/// are decoded by [`decode_response`] once the request's API and version are known.
#[derive(Clone, Debug)]
pub struct ResponseFrame {
    /// The correlation id of the request this answers.
    pub correlation_id: i32,
    /// The frame after the correlation id.
    pub rest: Bytes,
}

impl ResponseFrame {
    /// Reads the correlation id off the front of a frame payload.
    pub fn parse(mut frame: Bytes) -> Result<ResponseFrame, CodecError> {
        if frame.len() < 4 {
            return Err(CodecError::ShortResponse(frame.len()));
        }
        let correlation_id = frame.get_i32();
        Ok(ResponseFrame {
            correlation_id,
            rest: frame,
        })
    }
}

/// Decodes the rest of a response (header tagged fields, then the body) for request type `R` at
/// `version`. Record bytes in the body are slices of `rest`, not copies.
pub fn decode_response<R: Request>(
    mut rest: Bytes,
    version: i16,
) -> Result<R::Response, CodecError> {
    let api = api_key_of::<R>();
    let err = |message: String| CodecError::Decode {
        api,
        version,
        message,
    };
    if <R::Response as HeaderVersion>::header_version(version) >= 1 {
        skip_tagged_fields(&mut rest).map_err(err)?;
    }
    let body =
        <R::Response as Decodable>::decode(&mut rest, version).map_err(|e| err(e.to_string()))?;
    if rest.has_remaining() {
        // Java's and librdkafka's parsers ignore bytes after a complete message, and some
        // brokers send them (librdkafka's mock adds one to Metadata v12); so do we.
        tracing::debug!(
            ?api,
            version,
            extra = rest.remaining(),
            "ignoring trailing bytes after a response"
        );
    }
    Ok(body)
}

fn get_uvarint(buf: &mut Bytes) -> Result<u32, String> {
    let mut value: u32 = 0;
    for i in 0..5 {
        if !buf.has_remaining() {
            return Err("truncated varint".into());
        }
        let b = buf.get_u8();
        if i == 4 && b > 0x0f {
            return Err("varint overflows 32 bits".into());
        }
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 5 bytes".into())
}

fn skip_tagged_fields(buf: &mut Bytes) -> Result<(), String> {
    let n = get_uvarint(buf)?;
    for _ in 0..n {
        let _tag = get_uvarint(buf)?;
        let len = get_uvarint(buf)? as usize;
        if buf.remaining() < len {
            return Err(format!("tagged field of {len} bytes past the end"));
        }
        buf.advance(len);
    }
    Ok(())
}

/// Writes Kafka's unsigned varint (used by compact strings, arrays and tagged fields).
pub fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    #[test]
    fn request_roundtrips_through_kafka_protocol_decoder() {
        let req = MetadataRequest::default().with_topics(None);
        for version in [1i16, 9, 12] {
            let mut frame = encode_request(42, "strait", version, &req).unwrap();
            let size = frame.get_i32() as usize;
            assert_eq!(size, frame.len());
            let header =
                kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame).unwrap();
            assert_eq!(header.correlation_id, 42);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.client_id.as_deref(), Some("strait"));
            let back = MetadataRequest::decode(&mut frame, version).unwrap();
            assert_eq!(back, req);
            assert!(!frame.has_remaining());
        }
    }

    #[test]
    fn response_header_v1_tagged_fields_are_skipped_and_trailing_bytes_tolerated() {
        let resp = MetadataResponse::default().with_throttle_time_ms(7);
        let version = 12;
        let mut body = BytesMut::new();
        body.put_u8(1); // one tagged field
        put_uvarint(&mut body, 3);
        put_uvarint(&mut body, 2);
        body.put_slice(&[0xaa, 0xbb]);
        resp.encode(&mut body, version).unwrap();
        let got = decode_response::<MetadataRequest>(body.clone().freeze(), version).unwrap();
        assert_eq!(got.throttle_time_ms, 7);
        body.put_u8(0);
        let got = decode_response::<MetadataRequest>(body.freeze(), version).unwrap();
        assert_eq!(got.throttle_time_ms, 7);
    }

    /// Regression (fuzz/regressions/frame_decode): a response whose array count claims ~2^32
    /// elements must fail to decode, not reserve memory for them. kafka-protocol 0.18 reserved
    /// `Vec::with_capacity(count)` (a 24+ GiB allocation that aborts the process); the vendored
    /// copy caps it at the bytes remaining (protocol-client/vendor/kafka-protocol/VENDORED.md).
    #[test]
    fn huge_array_counts_do_not_allocate() {
        use kafka_protocol::messages::ProduceRequest;
        // v9: header tagged fields, then a compact array of 2^32 - 2 topics and nothing else.
        let compact = Bytes::from_static(&[0x00, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_response::<ProduceRequest>(compact, 9).is_err());
        // v8: a classic array of i32::MAX topics.
        let classic = Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(decode_response::<ProduceRequest>(classic, 8).is_err());
        // Metadata v12 with 2^32 - 2 brokers.
        let md = Bytes::from_static(&[0x00, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_response::<MetadataRequest>(md, 12).is_err());
    }

    /// A broker that sends a known tagged field at a version that lacks it (the SQLite tansu puts
    /// Fetch's `NodeEndpoints`, tag 0 of v16+, into v12 responses) must not fail the response:
    /// Java keeps such a field as unknown. kafka-protocol 0.18 failed it ("Tag 0 is not valid
    /// for version 12"); the vendored copy keeps it in `unknown_tagged_fields`.
    #[test]
    fn known_tags_at_older_versions_are_kept_as_unknown() {
        use kafka_protocol::messages::{FetchRequest, FetchResponse};
        let mut body = BytesMut::new();
        body.put_u8(0); // response header v1: no tagged fields
        body.put_i32(0); // throttle_time_ms
        body.put_i16(0); // error_code
        body.put_i32(7); // session_id
        body.put_u8(1); // responses: compact array of 0
        body.put_u8(1); // one tagged field
        put_uvarint(&mut body, 0); // tag 0 = NodeEndpoints (v16+)
        put_uvarint(&mut body, 1);
        body.put_u8(1); // an empty compact array
        let got: FetchResponse = decode_response::<FetchRequest>(body.freeze(), 12).unwrap();
        assert_eq!(got.session_id, 7);
        assert_eq!(got.unknown_tagged_fields.len(), 1);
        assert!(got.node_endpoints.is_empty());
    }

    #[test]
    fn garbage_bodies_are_errors_not_panics() {
        for len in 0..64 {
            let junk = Bytes::from(vec![0xffu8; len]);
            let _ = decode_response::<MetadataRequest>(junk, 12);
        }
        assert!(matches!(
            ResponseFrame::parse(Bytes::from_static(&[0, 1])),
            Err(CodecError::ShortResponse(2))
        ));
    }
}
