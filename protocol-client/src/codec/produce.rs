//! Zero-copy Produce request encoding.
//!
//! `kafka-protocol` encodes `ProduceRequest.records` by copying them into its output buffer
//! (its issue #104). On the replication hot path that would copy every byte once more, so this
//! module writes the request's framing itself — size, header, and every field of the Produce
//! schema (v3–v12; flexible from v9) — into small buffers and places each record batch's `Bytes`
//! in a [`BufChain`] between them. The socket receives the chain with a vectored write.
//!
//! The layout follows `ProduceRequest.json` in Apache Kafka: `transactional_id`, `acks`,
//! `timeout_ms`, `topic_data[name, partition_data[index, records]]`. The unit tests decode the
//! output with `kafka-protocol`'s own decoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use super::header::{put_request_header, put_uvarint};
use super::{BufChain, CodecError};

/// Record batches for one partition, in order.
#[derive(Clone, Debug, Default)]
pub struct PartitionRecords {
    /// Partition index.
    pub partition: i32,
    /// Complete v2 record batches, sent back to back.
    pub batches: Vec<Bytes>,
}

/// All partitions of one topic in a request.
#[derive(Clone, Debug, Default)]
pub struct TopicRecords {
    /// Topic name.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<PartitionRecords>,
}

/// Everything but the header of a Produce request.
#[derive(Clone, Debug)]
pub struct ProduceBody<'a> {
    /// Transactional id, if producing in a transaction.
    pub transactional_id: Option<&'a str>,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    /// How long the broker may wait for replication.
    pub timeout_ms: i32,
    /// The data.
    pub topics: &'a [TopicRecords],
}

/// Encodes a whole Produce request frame (size prefix included) as a chain whose record parts
/// are the callers' `Bytes`, untouched.
pub fn encode_produce(
    correlation_id: i32,
    client_id: &str,
    version: i16,
    body: &ProduceBody<'_>,
) -> Result<BufChain, CodecError> {
    if !(3..=12).contains(&version) {
        return Err(CodecError::Encode {
            api: ApiKey::Produce,
            version,
            message: "zero-copy Produce encoding supports v3..=12".into(),
        });
    }
    let flexible = version >= 9;
    let mut chain = BufChain::new();
    let mut head = BytesMut::with_capacity(128);
    head.put_i32(0); // size, patched below
    put_request_header(
        &mut head,
        ApiKey::Produce,
        version,
        correlation_id,
        client_id,
    )?;
    put_nullable_string(&mut head, body.transactional_id, flexible)?;
    head.put_i16(body.acks);
    head.put_i32(body.timeout_ms);
    put_array_len(&mut head, body.topics.len(), flexible)?;
    for topic in body.topics {
        put_nullable_string(&mut head, Some(&topic.name), flexible)?;
        put_array_len(&mut head, topic.partitions.len(), flexible)?;
        for p in &topic.partitions {
            head.put_i32(p.partition);
            let len: usize = p.batches.iter().map(Bytes::len).sum();
            if flexible {
                let n = u32::try_from(len + 1).map_err(|_| CodecError::TooLong {
                    what: "records",
                    len,
                })?;
                put_uvarint(&mut head, n);
            } else {
                let n = i32::try_from(len).map_err(|_| CodecError::TooLong {
                    what: "records",
                    len,
                })?;
                head.put_i32(n);
            }
            // Flush the framing bytes written so far, then the batches themselves.
            chain.push(head.split().freeze());
            for b in &p.batches {
                chain.push(b.clone());
            }
            if flexible {
                head.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            head.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        head.put_u8(0); // request tagged fields
    }
    chain.push(head.freeze());
    let total = bytes::Buf::remaining(&chain) - 4;
    let total = i32::try_from(total).map_err(|_| CodecError::TooLong {
        what: "request",
        len: total,
    })?;
    patch_size(&mut chain, total);
    Ok(chain)
}

fn patch_size(chain: &mut BufChain, size: i32) {
    // The first part always starts with the 4 size bytes we reserved; rebuild it with the size.
    let mut parts = std::mem::take(chain);
    let first = bytes::Buf::chunk(&parts).len();
    let mut fixed = BytesMut::with_capacity(first);
    fixed.put_i32(size);
    fixed.put_slice(&bytes::Buf::chunk(&parts)[4..]);
    bytes::Buf::advance(&mut parts, first);
    chain.push(fixed.freeze());
    chain.append(parts);
}

fn put_nullable_string(
    buf: &mut BytesMut,
    s: Option<&str>,
    flexible: bool,
) -> Result<(), CodecError> {
    match (s, flexible) {
        (None, false) => buf.put_i16(-1),
        (None, true) => buf.put_u8(0),
        (Some(s), false) => {
            let n = i16::try_from(s.len()).map_err(|_| CodecError::TooLong {
                what: "string",
                len: s.len(),
            })?;
            buf.put_i16(n);
            buf.put_slice(s.as_bytes());
        }
        (Some(s), true) => {
            if s.len() > i16::MAX as usize {
                return Err(CodecError::TooLong {
                    what: "string",
                    len: s.len(),
                });
            }
            put_uvarint(buf, s.len() as u32 + 1);
            buf.put_slice(s.as_bytes());
        }
    }
    Ok(())
}

fn put_array_len(buf: &mut BytesMut, n: usize, flexible: bool) -> Result<(), CodecError> {
    let too_long = || CodecError::TooLong {
        what: "array",
        len: n,
    };
    if flexible {
        put_uvarint(buf, u32::try_from(n + 1).map_err(|_| too_long())?);
    } else {
        buf.put_i32(i32::try_from(n).map_err(|_| too_long())?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::protocol::Decodable;

    fn sample_topics() -> Vec<TopicRecords> {
        vec![
            TopicRecords {
                name: "orders".into(),
                partitions: vec![
                    PartitionRecords {
                        partition: 0,
                        batches: vec![Bytes::from_static(b"batch-one"), Bytes::from_static(b"two")],
                    },
                    PartitionRecords {
                        partition: 7,
                        batches: vec![],
                    },
                ],
            },
            TopicRecords {
                name: "t".into(),
                partitions: vec![PartitionRecords {
                    partition: 3,
                    batches: vec![Bytes::from(vec![0xabu8; 300])],
                }],
            },
        ]
    }

    #[test]
    fn decodes_with_kafka_protocol_for_every_version() {
        let topics = sample_topics();
        for version in 3..=12 {
            for txn in [None, Some("txn-1")] {
                let body = ProduceBody {
                    transactional_id: txn,
                    acks: -1,
                    timeout_ms: 30_000,
                    topics: &topics,
                };
                let chain = encode_produce(9, "strait", version, &body).unwrap();
                let mut bytes = Bytes::from(chain.to_contiguous());
                let size = bytes.get_i32() as usize;
                assert_eq!(size, bytes.len(), "v{version} size prefix");
                let header =
                    kafka_protocol::protocol::decode_request_header_from_buffer(&mut bytes)
                        .unwrap();
                assert_eq!(header.correlation_id, 9);
                let req = ProduceRequest::decode(&mut bytes, version).unwrap();
                assert!(!bytes.has_remaining(), "v{version} trailing bytes");
                assert_eq!(req.acks, -1);
                assert_eq!(req.timeout_ms, 30_000);
                assert_eq!(req.transactional_id.as_ref().map(|t| &***t), txn);
                assert_eq!(req.topic_data.len(), 2);
                assert_eq!(&*req.topic_data[0].name, "orders");
                let p0 = &req.topic_data[0].partition_data[0];
                assert_eq!(p0.index, 0);
                assert_eq!(p0.records.as_deref(), Some(&b"batch-onetwo"[..]));
                assert_eq!(
                    req.topic_data[0].partition_data[1].records.as_deref(),
                    Some(&b""[..])
                );
                assert_eq!(req.topic_data[1].partition_data[0].index, 3);
                assert_eq!(
                    req.topic_data[1].partition_data[0].records.as_deref(),
                    Some(&[0xabu8; 300][..])
                );
            }
        }
    }

    #[test]
    fn record_bytes_are_not_copied() {
        let topics = sample_topics();
        let body = ProduceBody {
            transactional_id: None,
            acks: -1,
            timeout_ms: 1,
            topics: &topics,
        };
        let chain = encode_produce(1, "c", 9, &body).unwrap();
        let big = &topics[1].partitions[0].batches[0];
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = chain.chunks_vectored(&mut slices);
        assert!(
            slices[..n]
                .iter()
                .any(|s| s.as_ptr() == big.as_ptr() && s.len() == big.len()),
            "the batch's own buffer is one of the chain's parts"
        );
    }

    #[test]
    fn unsupported_version_is_an_error() {
        let body = ProduceBody {
            transactional_id: None,
            acks: 1,
            timeout_ms: 1,
            topics: &[],
        };
        assert!(encode_produce(1, "c", 13, &body).is_err());
        assert!(encode_produce(1, "c", 2, &body).is_err());
    }
}
