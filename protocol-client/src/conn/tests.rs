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
    conn.req.versions = ApiVersionTable::from_response(
        &ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::Metadata as i16)
            .with_min_version(0)
            .with_max_version(12)]),
    );
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
    assert!(conn.req.shared.lock().pending.is_empty(), "no leaked slots");
    // Late responses are discarded; the connection keeps working.
    write_metadata_response(&mut server, corr1, v, 1).await;
    write_metadata_response(&mut server, corr2, v, 2).await;
    let c = conn.clone();
    let ok = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr3, v, _) = read_request(&mut server).await;
    write_metadata_response(&mut server, corr3, v, 3).await;
    assert_eq!(ok.await.unwrap().unwrap().throttle_time_ms, 3);
    assert!(!conn.is_closed());
    assert!(conn.req.shared.lock().abandoned.is_empty());
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

/// Writes a response frame (header v0 unless `flexible`).
async fn write_response<M: Encodable>(
    s: &mut tokio::net::TcpStream,
    corr: i32,
    flexible: bool,
    msg: &M,
    version: i16,
) {
    let mut body = BytesMut::new();
    body.put_i32(corr);
    if flexible {
        body.put_u8(0);
    }
    msg.encode(&mut body, version).unwrap();
    s.write_i32(body.len() as i32).await.unwrap();
    s.write_all(&body).await.unwrap();
}

async fn read_tcp_request(s: &mut tokio::net::TcpStream) -> Option<(i16, i32, i16, Bytes)> {
    let len = s.read_i32().await.ok()? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.ok()?;
    let mut b = Bytes::from(buf);
    let h = kafka_protocol::protocol::decode_request_header_from_buffer(&mut b).unwrap();
    Some((
        h.request_api_key,
        h.correlation_id,
        h.request_api_version,
        b,
    ))
}

/// KIP-368: with a session lifetime, the client authenticates again before it ends, and no other
/// request is written between SaslHandshake and the end of the SaslAuthenticate exchange (two
/// rounds with SCRAM), even while other requests keep being issued.
#[tokio::test]
async fn sasl_reauthenticates_before_the_session_ends_without_interleaving() {
    use crate::security::sasl::SaslConfig;
    use crate::security::Secret;
    use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lifetime_ms = 300i64;
    let scram_server = crate::security::sasl::scram::tests::TestServer::new(
        crate::security::sasl::ScramHash::Sha256,
        "pw",
        4096,
    );
    let server = tokio::spawn(async move {
        let mut round: Option<(String, String)> = None;
        let (mut s, _) = listener.accept().await.unwrap();
        // (api key, sequence) of everything the client sent after the first authentication.
        let mut log: Vec<(i16, std::time::Instant)> = Vec::new();
        let mut handshakes = 0;
        while let Some((api, corr, version, body)) = read_tcp_request(&mut s).await {
            log.push((api, std::time::Instant::now()));
            match ApiKey::try_from(api).unwrap() {
                ApiKey::ApiVersions => {
                    let keys = [
                        (ApiKey::ApiVersions, 0, 3),
                        (ApiKey::Metadata, 0, 12),
                        (ApiKey::SaslHandshake, 0, 1),
                        (ApiKey::SaslAuthenticate, 0, 2),
                    ]
                    .iter()
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect();
                    let resp = ApiVersionsResponse::default().with_api_keys(keys);
                    write_response(&mut s, corr, false, &resp, version).await;
                }
                ApiKey::SaslHandshake => {
                    handshakes += 1;
                    let resp = SaslHandshakeResponse::default();
                    write_response(&mut s, corr, false, &resp, version).await;
                }
                ApiKey::SaslAuthenticate => {
                    let mut b = body;
                    let req = <kafka_protocol::messages::SaslAuthenticateRequest as kafka_protocol::protocol::Decodable>::decode(&mut b, version).unwrap();
                    let resp = match round.take() {
                        None => {
                            // client-first -> server-first
                            let (server_first, bare) = scram_server.first(&req.auth_bytes);
                            let resp = SaslAuthenticateResponse::default()
                                .with_auth_bytes(Bytes::from(server_first.clone().into_bytes()));
                            round = Some((server_first, bare));
                            resp
                        }
                        Some((server_first, bare)) => {
                            // client-final -> server-final, with the session lifetime
                            let server_final = scram_server
                                .last(&bare, &server_first, &req.auth_bytes)
                                .expect("client proof verifies");
                            SaslAuthenticateResponse::default()
                                .with_auth_bytes(Bytes::from(server_final.into_bytes()))
                                .with_session_lifetime_ms(lifetime_ms)
                        }
                    };
                    let done = resp.session_lifetime_ms > 0;
                    write_response(&mut s, corr, version >= 2, &resp, version).await;
                    if done && handshakes == 3 {
                        // Keep the socket open until the test has checked the connection.
                        return (log, s);
                    }
                }
                ApiKey::Metadata => {
                    write_metadata_tcp(&mut s, corr, version).await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (log, s)
    });
    let cfg = ConnConfig {
        sasl: Some(SaslConfig::Scram {
            hash: crate::security::sasl::ScramHash::Sha256,
            username: "alice".into(),
            password: Secret::new("pw"),
        }),
        ..config()
    };
    let conn = Arc::new(Connection::connect(&addr.to_string(), &cfg).await.unwrap());
    let started = std::time::Instant::now();
    // Keep requests flowing, several in flight at a time, until the server has seen two
    // re-authentications.
    let pump = {
        let conn = conn.clone();
        tokio::spawn(async move {
            loop {
                let mut waits = Vec::new();
                for _ in 0..4 {
                    let c = conn.clone();
                    waits.push(tokio::spawn(async move {
                        c.send(&MetadataRequest::default()).await
                    }));
                }
                for w in waits {
                    if w.await.unwrap().is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (log, _server_socket) = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("two re-authentications within 10 s")
        .unwrap();
    pump.abort();
    let hs = ApiKey::SaslHandshake as i16;
    let au = ApiKey::SaslAuthenticate as i16;
    let positions: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| *k == hs)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 3, "{log:?}");
    for &p in &positions {
        assert_eq!(
            log[p + 1].0,
            au,
            "request after SaslHandshake at {p}: {log:?}"
        );
    }
    // Metadata requests flowed between the re-authentications.
    let metadata = log
        .iter()
        .filter(|(k, _)| *k == ApiKey::Metadata as i16)
        .count();
    assert!(metadata > 10, "only {metadata} metadata requests");
    // Each re-authentication came between 85 % and 95 % (plus scheduling slack) of the lifetime.
    let first = log[positions[1]].1.duration_since(started);
    assert!(
        first >= Duration::from_millis(250) && first < Duration::from_secs(2),
        "{first:?}"
    );
    assert!(!conn.is_closed());
}

async fn write_metadata_tcp(s: &mut tokio::net::TcpStream, corr: i32, version: i16) {
    let resp = MetadataResponse::default();
    write_response(s, corr, version >= 9, &resp, version).await;
}

/// A Metadata response frame (size prefix included) naming `topics` topics: over 64 KiB with
/// a few thousand, so it takes the pooled-buffer path of the reader.
fn metadata_frame(corr: i32, version: i16, topics: usize) -> Vec<u8> {
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::TopicName;
    let mut body = BytesMut::new();
    body.put_i32(corr);
    if version >= 9 {
        body.put_u8(0);
    }
    MetadataResponse::default()
        .with_topics(
            (0..topics)
                .map(|i| {
                    MetadataResponseTopic::default().with_name(Some(TopicName(
                        StrBytes::from_string(format!("topic-with-a-long-name-{i:08}")),
                    )))
                })
                .collect(),
        )
        .encode(&mut body, version)
        .unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test]
async fn a_large_response_dribbled_in_pieces_between_small_ones_arrives_with_them() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let mut calls = Vec::new();
    for _ in 0..3 {
        let c = conn.clone();
        calls.push(tokio::spawn(async move {
            c.send(&MetadataRequest::default())
                .await
                .unwrap()
                .topics
                .len()
        }));
    }
    let a = read_request(&mut server).await;
    let b = read_request(&mut server).await;
    let c = read_request(&mut server).await;
    // A small response with the start of a large one in the same piece, the large one, and a
    // small one right behind it.
    let mut bytes = metadata_frame(c.0, c.1, 1);
    let large = metadata_frame(a.0, a.1, 3000);
    assert!(
        large.len() > 2 * crate::bufpool::MIN_POOLED,
        "{}",
        large.len()
    );
    bytes.extend_from_slice(&large);
    bytes.extend_from_slice(&metadata_frame(b.0, b.1, 2));
    // Odd-sized pieces: the size prefix, the body and the next frame split everywhere.
    for piece in bytes.chunks(7919) {
        server.write_all(piece).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut got = Vec::new();
    for c in calls {
        got.push(c.await.unwrap());
    }
    got.sort();
    assert_eq!(got, vec![1, 2, 3000]);
}

#[tokio::test]
async fn a_connection_closed_in_the_middle_of_a_large_response_fails_its_request() {
    let (conn, mut server) = pair();
    let conn = Arc::new(conn);
    let c = conn.clone();
    let call = tokio::spawn(async move { c.send(&MetadataRequest::default()).await });
    let (corr, version, _) = read_request(&mut server).await;
    let frame = metadata_frame(corr, version, 3000);
    server.write_all(&frame[..frame.len() / 2]).await.unwrap();
    drop(server);
    let err = call.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("in the middle of a response"),
        "{err}"
    );
    assert!(conn.is_closed());
}
