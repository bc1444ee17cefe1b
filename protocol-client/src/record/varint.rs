//! Zigzag varints (Kafka `ByteUtils.readVarint`/`readVarlong`), strict about overflow.

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More than 5 (10) bytes, or bits beyond 32 (64).
    Overflow,
}

/// Reads a zigzag varint (i32) at `*pos`, advancing it.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let mut raw: u32 = 0;
    for i in 0..5 {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(VarintError::Truncated);
        };
        if i == 4 && b > 0x0f {
            return Err(VarintError::Overflow);
        }
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(VarintError::Overflow)
}

/// Reads a zigzag varlong (i64) at `*pos`, advancing it.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(VarintError::Truncated);
        };
        if i == 9 && b > 0x01 {
            return Err(VarintError::Overflow);
        }
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(VarintError::Overflow)
}

/// Appends a zigzag varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_unsigned(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends a zigzag varlong.
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_unsigned(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn write_unsigned(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Encoded size of a zigzag varint.
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

/// Encoded size of a zigzag varlong.
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(((v << 1) ^ (v >> 63)) as u64)
}

fn unsigned_len(raw: u64) -> usize {
    let bits = 64 - (raw | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // From the protobuf/Kafka zigzag tables.
        for (v, enc) in [
            (0, &[0x00][..]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, v);
            assert_eq!(out, enc, "{v}");
            assert_eq!(varint_len(v), enc.len());
            let mut pos = 0;
            assert_eq!(read_varint(enc, &mut pos), Ok(v));
            assert_eq!(pos, enc.len());
        }
    }

    #[test]
    fn overflow_and_truncation() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], &mut pos),
            Err(VarintError::Overflow)
        );
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut pos),
            Err(VarintError::Overflow)
        );
        assert_eq!(
            read_varint(&[0x80, 0x80], &mut pos),
            Err(VarintError::Truncated)
        );
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
        assert_eq!(
            read_varlong(&[0xff; 10], &mut pos),
            Err(VarintError::Overflow)
        );
        let mut long_max = vec![0xff; 9];
        long_max.push(0x02);
        assert_eq!(
            read_varlong(&long_max, &mut pos),
            Err(VarintError::Overflow)
        );
        assert_eq!(pos, 0);
    }

    proptest! {
        #[test]
        fn varint_round_trip(v: i32) {
            let mut out = vec![0xaa];
            write_varint(&mut out, v);
            prop_assert_eq!(out.len() - 1, varint_len(v));
            let mut pos = 1;
            prop_assert_eq!(read_varint(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }

        #[test]
        fn varlong_round_trip(v: i64) {
            let mut out = Vec::new();
            write_varlong(&mut out, v);
            prop_assert_eq!(out.len(), varlong_len(v));
            let mut pos = 0;
            prop_assert_eq!(read_varlong(&out, &mut pos), Ok(v));
            prop_assert_eq!(pos, out.len());
        }
    }
}
