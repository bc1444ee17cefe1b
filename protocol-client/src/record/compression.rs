//! Compression codecs of the records section, with capped decompression.

use std::io::{self, Read, Write};

use bytes::Bytes;

use super::{Compression, DecodeLimits, RecordError};

/// xerial snappy-java stream magic (`SnappyCodec.MAGIC_HEADER`).
pub(crate) const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// xerial header: magic, version i32, compatible version i32.
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed block size of Java's `SnappyOutputStream`.
const XERIAL_BLOCK_SIZE: usize = 32 * 1024;

/// Zstd level used when building (Kafka's and librdkafka's default).
const ZSTD_LEVEL: i32 = 3;

/// Decompresses a records section (a slice of the batch for [`Compression::None`]).
pub(crate) fn decompress(
    codec: Compression,
    input: Bytes,
    limits: &DecodeLimits,
    base_offset: i64,
) -> Result<Bytes, RecordError> {
    let limit = limits.max_decompressed_bytes;
    let too_large = || RecordError::DecompressedTooLarge {
        codec,
        limit,
        base_offset,
    };
    let corrupt = |source: super::CodecError| RecordError::Decompress {
        codec,
        base_offset,
        source,
    };
    let out = match codec {
        // Already in memory as part of the batch: nothing to cap.
        Compression::None => return Ok(input),
        Compression::Gzip => {
            read_capped(flate2::read::MultiGzDecoder::new(&input[..]), &input, limit)
        }
        Compression::Lz4 => read_capped(
            lz4_flex::frame::FrameDecoder::new(&input[..]),
            &input,
            limit,
        ),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&input[..])
                .map_err(|e| corrupt(e.into()))?;
            decoder
                .window_log_max(limits.max_zstd_window_log)
                .map_err(|e| corrupt(e.into()))?;
            read_capped(decoder, &input, limit)
        }
        Compression::Snappy => {
            return snappy_decompress(&input, limit)
                .map(Bytes::from)
                .map_err(|e| match e {
                    SnappyError::TooLarge => too_large(),
                    SnappyError::Corrupt(source) => corrupt(source),
                })
        }
    };
    match out {
        Ok(Some(v)) => Ok(Bytes::from(v)),
        Ok(None) => Err(too_large()),
        Err(e) => Err(corrupt(e.into())),
    }
}

/// Reads `reader` to the end, or `Ok(None)` if it yields more than `limit` bytes.
fn read_capped<R: Read>(reader: R, input: &[u8], limit: usize) -> io::Result<Option<Vec<u8>>> {
    let cap = (limit as u64).saturating_add(1);
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(limit).saturating_add(1));
    reader.take(cap).read_to_end(&mut out)?;
    Ok((out.len() <= limit).then_some(out))
}

enum SnappyError {
    TooLarge,
    Corrupt(super::CodecError),
}

impl From<snap::Error> for SnappyError {
    fn from(e: snap::Error) -> Self {
        SnappyError::Corrupt(Box::new(e))
    }
}

fn snappy_corrupt(msg: &'static str) -> SnappyError {
    SnappyError::Corrupt(msg.into())
}

/// Decodes xerial-framed (Java) or raw (librdkafka) snappy.
fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, SnappyError> {
    let mut decoder = snap::raw::Decoder::new();
    if !input.starts_with(&XERIAL_MAGIC) {
        let len = snap::raw::decompress_len(input)?;
        if len > limit {
            return Err(SnappyError::TooLarge);
        }
        return Ok(decoder.decompress_vec(input)?);
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let rest = &input[pos..];
        // snappy-java also accepts concatenated streams, each with its own header.
        if rest.starts_with(&XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER_LEN {
                return Err(snappy_corrupt("truncated xerial snappy header"));
            }
            pos += XERIAL_HEADER_LEN;
            continue;
        }
        if rest.len() < 4 {
            return Err(snappy_corrupt("truncated xerial snappy block length"));
        }
        let block_len = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let block_len = usize::try_from(block_len)
            .map_err(|_| snappy_corrupt("negative xerial snappy block length"))?;
        let Some(block) = rest.get(4..4 + block_len) else {
            return Err(snappy_corrupt("xerial snappy block longer than the input"));
        };
        let len = snap::raw::decompress_len(block)?;
        if len > limit - out.len() {
            return Err(SnappyError::TooLarge);
        }
        let start = out.len();
        out.resize(start + len, 0);
        let written = decoder.decompress(block, &mut out[start..])?;
        out.truncate(start + written);
        pos += 4 + block_len;
    }
    Ok(out)
}

/// Compresses `input` into `out` (appending).
pub(crate) fn compress(
    codec: Compression,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let fail = |e: io::Error| RecordError::Compress {
        codec,
        source: Box::new(e),
    };
    match codec {
        Compression::None => out.extend_from_slice(input),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
            encoder.write_all(input).map_err(fail)?;
            encoder.finish().map_err(fail)?;
        }
        Compression::Snappy => {
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(XERIAL_BLOCK_SIZE) {
                let len_at = out.len();
                out.extend_from_slice(&[0; 4]);
                let start = out.len();
                out.resize(start + snap::raw::max_compress_len(block.len()), 0);
                let written = encoder.compress(block, &mut out[start..]).map_err(|e| {
                    RecordError::Compress {
                        codec,
                        source: Box::new(e),
                    }
                })?;
                out.truncate(start + written);
                // A block of at most 32 KiB compresses to well under i32::MAX.
                out[len_at..start].copy_from_slice(&(written as i32).to_be_bytes());
            }
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            encoder.write_all(input).map_err(fail)?;
            encoder.finish().map_err(|e| fail(e.into()))?;
        }
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL).map_err(fail)?;
            // Declaring the size lets zstd shrink the window to the data: decoders then
            // allocate no more than the batch needs.
            encoder
                .set_pledged_src_size(Some(input.len() as u64))
                .map_err(fail)?;
            encoder.include_contentsize(true).map_err(fail)?;
            encoder.write_all(input).map_err(fail)?;
            encoder.finish().map_err(fail)?;
        }
    }
    Ok(())
}
