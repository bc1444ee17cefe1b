//! Zero-copy splitting of a fetch response's `records` into batches.

use bytes::Bytes;

use super::batch::{check_prefix, read_i32, read_i64, LENGTH_AT};
use super::{RecordBatch, RecordError, LOG_OVERHEAD};

/// Splits the `records` bytes of a fetch response partition into batches (Kafka's
/// `ByteBufferLogInputStream`).
///
/// Each batch is a [`Bytes`] slice of `records` (no copy). A trailing partial batch, which
/// brokers return when `max_bytes` cuts one, ends the iteration cleanly; its size is then
/// [`BatchSplitter::truncated_tail`]. Garbage (bad magic, impossible length, bad header) is an
/// error, after which the iterator is finished.
pub fn split_batches(records: Bytes) -> BatchSplitter {
    BatchSplitter {
        data: records,
        position: 0,
        tail: 0,
        max_batch_len: None,
        done: false,
    }
}

/// Iterator returned by [`split_batches`].
#[derive(Debug)]
pub struct BatchSplitter {
    data: Bytes,
    position: usize,
    tail: usize,
    max_batch_len: Option<usize>,
    done: bool,
}

impl BatchSplitter {
    /// Rejects (with [`RecordError::BadLength`]) batches whose total size exceeds `max` bytes,
    /// rather than waiting for more bytes: use the largest batch the fetch could return.
    pub fn max_batch_len(mut self, max: usize) -> Self {
        self.max_batch_len = Some(max);
        self
    }

    /// Bytes of the trailing partial batch, once iteration has reached it (0 before, and when
    /// the input ended on a batch boundary).
    pub fn truncated_tail(&self) -> usize {
        self.tail
    }

    /// Byte position of the next batch in the input.
    pub fn position(&self) -> usize {
        self.position
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, RecordError> {
        let rest = &self.data[self.position..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest.len() < LOG_OVERHEAD {
            self.tail = rest.len();
            return Ok(None);
        }
        let batch_length = read_i32(rest, LENGTH_AT);
        if rest.len() <= super::batch::MAGIC_AT {
            // Magic not visible yet: only reject lengths that no batch can have.
            if batch_length < super::batch::MIN_BATCH_LENGTH {
                return Err(RecordError::BadLength {
                    batch_length,
                    reason: "smaller than the v2 batch header",
                    base_offset: read_i64(rest, 0),
                    position: self.position,
                });
            }
        } else {
            check_prefix(rest, self.position)?;
        }
        let total = LOG_OVERHEAD + batch_length.max(0) as usize;
        if let Some(max) = self.max_batch_len {
            if total > max {
                return Err(RecordError::BadLength {
                    batch_length,
                    reason: "larger than the maximum batch size",
                    base_offset: read_i64(rest, 0),
                    position: self.position,
                });
            }
        }
        if rest.len() < total {
            self.tail = rest.len();
            return Ok(None);
        }
        let batch = RecordBatch::parse(self.data.slice(self.position..self.position + total))?;
        self.position += total;
        Ok(Some(batch))
    }
}

impl Iterator for BatchSplitter {
    type Item = Result<RecordBatch, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_batch() {
            Ok(Some(batch)) => Some(Ok(batch)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for BatchSplitter {}
