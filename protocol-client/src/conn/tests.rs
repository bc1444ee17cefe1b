//! Connection tests against scripted brokers (in-memory duplex streams and a real TCP socket).

use super::*;
use bytes::BufMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn config() -> ConnConfig {
    ConnConfig {
        request_timeout: Duration::from_millis(500),
        max_frame_bytes: 1 << 20,
        ..ConnConfig::default()
    }
}

/// A connection whose broker side is returned to the test, with a version table preset so
/// requests can be sent without ApiVersions.
fn pair() -> (Connection, DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (rd, wr) = tokio::io::split(client);
    let mut conn = Connection::start("test-broker", Box::new(rd), Box::new(wr), config());
    conn.versions = ApiVersionTable::from_response(&ApiVersionsResponse::default().with_api_keys(
        vec![ApiVersion::default()
            .with_api_key(ApiKey::Metadata as i16)
            .with_min_version(0)
            .with_max_version(12)],
    ));
    (conn, server)
}

/// Reads one request frame; returns (correlation id, api version).
async fn read_request(s: &mut DuplexStream) -> (i32, i16, Bytes) {
    let len = s.read_i32().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    let mut b = Bytes::from(buf);
    let h = kafka_protocol::protocol::decode_request_header_from_buffer(&mut b).unwrap();
    (h.correlation_id, h.request_api_version, b)
}

async fn write_metadata_response(s: &mut DuplexStream, corr: i32, version: i16, throttle: i32) {
    let mut body = BytesMut::new();
    body.put_i32(corr);
    if version >= 9 {
        body.put_u8(0); // response header v1 tagged fields
    }
    MetadataResponse::default()
        .with_throttle_time_ms(throttle)
        .encode(&mut body, version)
        .unwrap();
    s.write_i32(body.len() as i32).await.unwrap();
    s.write_all(&body).await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_match_out_of_order_responses() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let mut calls = Vec::new();
    for _ in 0..3 {
        let c = conn.clone();
        calls.push(tokio::spawn(async move {
            c.send(&MetadataRequest::default())
                .await
                .unwrap()
                .throttle_time_ms
        }));
    }
    let mut reqs = Vec::new();
    for _ in 0..3 {
        reqs.push(read_request(&mut server).await);
    }
    // Answer in reverse order; throttle carries the correlation id back.
    for (corr, version, _) in reqs.iter().rev() {
        write_metadata_response(&mut server, *corr, *version, *corr * 10).await;
    }
    let mut got = Vec::new();
    for c in calls {
        got.push(c.await.unwrap());
    }
    got.sort();
    let mut want: Vec<_> = reqs.iter().map(|r| r.0 * 10).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn unknown_correlation_id_fails_everything_and_closes() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let c = conn.clone();
    let call = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr, version, _) = read_request(&mut server).await;
    write_metadata_response(&mut server, corr + 1000, version, 0).await;
    let err = call.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("unknown correlation id"), "{err}");
    assert!(conn.is_closed());
    let again = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(again, ConnError::Closed { .. }), "{again}");
}

#[tokio::test]
async fn garbage_negative_and_oversized_frames_close_the_connection() {
    for bad in [
        vec![0xff, 0xff, 0xff, 0xff], // negative length
        vec![0x7f, 0, 0, 0],          // beyond max_frame_bytes
        vec![0, 0, 0, 2, 0xde, 0xad], // shorter than a correlation id
    ] {
        let (conn, mut server) = pair();
        let conn = Arc::new(conn);
        let c = conn.clone();
        let call = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
        let _ = read_request(&mut server).await;
        server.write_all(&bad).await.unwrap();
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, ConnError::Closed { .. }), "{bad:?}: {err}");
        assert!(conn.is_closed());
    }
}

#[tokio::test]
async fn undecodable_body_fails_only_that_request() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let c = conn.clone();
    let call = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr, _, _) = read_request(&mut server).await;
    // A frame with the right correlation id but a truncated body.
    server.write_all(&[0, 0, 0, 6]).await.unwrap();
    server.write_all(&corr.to_be_bytes()).await.unwrap();
    server.write_all(&[0, 5]).await.unwrap();
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, ConnError::Codec { .. }), "{err}");
}

#[tokio::test]
async fn broker_closing_mid_response_fails_in_flight_requests() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let c = conn.clone();
    let call = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr, _, _) = read_request(&mut server).await;
    server.write_all(&[0, 0, 0, 100]).await.unwrap();
    server.write_all(&corr.to_be_bytes()).await.unwrap();
    drop(server);
    let err = call.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("middle of a response"), "{err}");
}

#[tokio::test]
async fn timed_out_and_cancelled_callers_free_their_slot() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    // 1. timeout
    let c = conn.clone();
    let t = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr1, v, _) = read_request(&mut server).await;
    let err = t.await.unwrap().unwrap_err();
    assert!(matches!(err, ConnError::Timeout { .. }), "{err}");
    // 2. cancellation
    let c = conn.clone();
    let cancelled = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr2, _, _) = read_request(&mut server).await;
    cancelled.abort();
    let _ = cancelled.await;
    assert!(conn.shared.lock().pending.is_empty(), "no leaked slots");
    // Late responses are discarded; the connection keeps working.
    write_metadata_response(&mut server, corr1, v, 1).await;
    write_metadata_response(&mut server, corr2, v, 2).await;
    let c = conn.clone();
    let ok = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr3, v, _) = read_request(&mut server).await;
    write_metadata_response(&mut server, corr3, v, 3).await;
    assert_eq!(ok.await.unwrap().unwrap().throttle_time_ms, 3);
    assert!(!conn.is_closed());
    assert!(conn.shared.lock().abandoned.is_empty());
}

#[tokio::test]
async fn a_broken_connection_does_not_affect_another() {
    let (a, mut sa) = pair();
    let (b, mut sb) = pair();
    let (a, b) = (Arc::new(a), Arc::new(b));
    let ca = a.clone();
    let fa = tokio::spawn(async move { ca.send(&MetadataRequest::default()).await });
    let cb = b.clone();
    let fb = tokio::spawn(async move { cb.send(&MetadataRequest::default()).await });
    let _ = read_request(&mut sa).await;
    sa.write_all(&[0xff; 4]).await.unwrap();
    let (corr, v, _) = read_request(&mut sb).await;
    write_metadata_response(&mut sb, corr, v, 5).await;
    assert!(fa.await.unwrap().is_err());
    assert_eq!(fb.await.unwrap().unwrap().throttle_time_ms, 5);
    assert!(a.is_closed() && !b.is_closed());
}

/// A real TCP broker that rejects ApiVersions v3 (as pre-2.4 brokers do) and answers the
/// fallback version: the client must end up with the broker's table.
#[tokio::test]
async fn api_versions_falls_back_when_the_broker_rejects_the_version() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..2 {
            let len = s.read_i32().await.unwrap() as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.unwrap();
            let mut b = Bytes::from(buf);
            let h = kafka_protocol::protocol::decode_request_header_from_buffer(&mut b).unwrap();
            seen.push(h.request_api_version);
            let keys = vec![
                ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_min_version(0)
                    .with_max_version(1),
                ApiVersion::default()
                    .with_api_key(ApiKey::Metadata as i16)
                    .with_min_version(0)
                    .with_max_version(5),
            ];
            let (code, version) = if h.request_api_version > 1 {
                (35, 0)
            } else {
                (0, h.request_api_version)
            };
            let resp = ApiVersionsResponse::default()
                .with_error_code(code)
                .with_api_keys(keys);
            let mut body = BytesMut::new();
            body.put_i32(h.correlation_id);
            resp.encode(&mut body, version).unwrap();
            s.write_i32(body.len() as i32).await.unwrap();
            s.write_all(&body).await.unwrap();
        }
        seen
    });
    let conn = Connection::connect(&addr.to_string(), &config())
        .await
        .unwrap();
    assert_eq!(conn.versions().broker_range(ApiKey::Metadata), Some((0, 5)));
    assert_eq!(conn.version(ApiKey::Metadata).unwrap(), 5);
    assert_eq!(server.await.unwrap(), vec![3, 1]);
}

#[tokio::test]
async fn connect_to_a_closed_port_is_a_connect_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Connection::connect(&format!("127.0.0.1:{port}"), &config())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnError::Connect { .. }), "{err}");
    assert!(err.is_transport());
}
