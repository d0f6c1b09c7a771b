//! Compressed record batches, as Kafka's clients write them: the records
//! section (everything after the 61-byte header) compressed whole with
//! the codec the attributes name (bits 0-2: 1 gzip, 2 snappy, 3 lz4,
//! 4 zstd). The log stores such a batch as it came, CRC and all; readers
//! decompress its records (see [`crate::Batch::decoded`]).
//!
//! Decompression is bounded: a batch may expand to at most
//! [`DECOMPRESSED_BYTES_MAX`], so a small hostile batch cannot take the
//! broker's memory.

use std::io::{Read, Write};

use crate::batch::{ATTR_COMPRESSION_MASK, BatchError};
use crate::config::BATCH_BYTES_LIMIT;

/// Most bytes a compressed batch's records may expand to.
pub const DECOMPRESSED_BYTES_MAX: usize = BATCH_BYTES_LIMIT;

/// A record batch's compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec a batch's attributes name.
    pub fn from_attributes(attributes: u16) -> Result<Compression, BatchError> {
        Ok(match attributes & ATTR_COMPRESSION_MASK {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(BatchError::UnknownCompression(other)),
        })
    }

    /// The codec's bits in a batch's attributes.
    pub fn attribute_bits(self) -> u16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Kafka's name for it (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// `records` compressed with this codec (unchanged for `None`);
    /// `None` if the codec failed (it writes to memory, so only when
    /// memory ran out).
    pub fn compress(self, records: &[u8]) -> Option<Vec<u8>> {
        match self {
            Compression::None => Some(records.to_vec()),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(records.len() / 2),
                    flate2::Compression::default(),
                );
                e.write_all(records).ok()?;
                e.finish().ok()
            }
            Compression::Snappy => snappy_xerial(records),
            Compression::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(
                    info,
                    Vec::with_capacity(records.len() / 2),
                );
                e.write_all(records).ok()?;
                e.finish().ok()
            }
            // Level 3, zstd's (and Kafka's) default.
            Compression::Zstd => zstd::bulk::compress(records, 3).ok(),
        }
    }

    /// `compressed` expanded, at most `limit` bytes of it.
    pub fn decompress(self, compressed: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
        let failed = |reason: String| BatchError::Decompress {
            codec: self.name(),
            reason,
        };
        let mut out = Vec::new();
        let read = match self {
            Compression::None => return Ok(compressed.to_vec()),
            Compression::Gzip => {
                read_bounded(flate2::read::GzDecoder::new(compressed), limit, &mut out)
            }
            Compression::Snappy => return snappy_decompress(compressed, limit).map_err(failed),
            Compression::Lz4 => read_bounded(
                lz4_flex::frame::FrameDecoder::new(compressed),
                limit,
                &mut out,
            ),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(compressed)
                .and_then(|d| read_bounded(d, limit, &mut out)),
        };
        match read {
            Ok(()) => Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => Err(BatchError::TooLarge {
                size: limit + 1,
                limit,
            }),
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Compression, String> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown compression {s:?}: use none, gzip, snappy, lz4 or zstd")
            })
    }
}

/// Reads all of `r` into `out`, failing (as out of memory) past `limit`.
fn read_bounded(r: impl Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut bounded = r.take(limit as u64 + 1);
    bounded.read_to_end(out)?;
    if out.len() > limit {
        return Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
    }
    Ok(())
}

/// The framing Kafka's Java client writes around snappy (xerial's
/// `SnappyOutputStream`): a 16-byte header, then blocks of 32 KiB each
/// compressed alone behind its 4-byte big-endian length. librdkafka
/// writes bare snappy; readers take both.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_MAGIC_LEN: usize = 8;
const XERIAL_BLOCK: usize = 32 << 10;

fn snappy_xerial(records: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() / 2 + XERIAL_HEADER.len());
    out.extend_from_slice(XERIAL_HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(XERIAL_BLOCK) {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.resize(at + 4 + snap::raw::max_compress_len(block.len()), 0);
        let n = encoder.compress(block, &mut out[at + 4..]).ok()?;
        out.truncate(at + 4 + n);
        out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
    }
    Some(out)
}

fn snappy_decompress(compressed: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |input: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let n = snap::raw::decompress_len(input).map_err(|e| e.to_string())?;
        if out.len() + n > limit {
            return Err(format!("it expands past {limit} bytes"));
        }
        let at = out.len();
        out.resize(at + n, 0);
        decoder
            .decompress(input, &mut out[at..])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    let mut out = Vec::new();
    if compressed.get(..XERIAL_MAGIC_LEN) != Some(&XERIAL_HEADER[..XERIAL_MAGIC_LEN]) {
        block(compressed, &mut out)?;
        return Ok(out);
    }
    let mut rest = compressed
        .get(XERIAL_HEADER.len()..)
        .ok_or("the xerial header is cut short")?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("a block length is cut short")?;
        let body = rest.get(4..4 + len).ok_or("a block is cut short")?;
        block(body, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("record {} of a fairly repetitive stream;", i % 977).into_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_and_shrinks_repetitive_records() {
        let records = sample();
        for codec in Compression::ALL {
            let compressed = codec.compress(&records).unwrap();
            if codec != Compression::None {
                assert!(
                    compressed.len() * 4 < records.len(),
                    "{codec}: {} of {}",
                    compressed.len(),
                    records.len()
                );
            }
            let back = codec
                .decompress(&compressed, DECOMPRESSED_BYTES_MAX)
                .unwrap();
            assert!(back == records, "{codec} did not round-trip");
            assert_eq!(
                Compression::from_attributes(codec.attribute_bits()).unwrap(),
                codec
            );
            assert_eq!(codec.name().parse::<Compression>().unwrap(), codec);
        }
        assert!(Compression::from_attributes(5).is_err());
        assert!("brotli".parse::<Compression>().is_err());
    }

    #[test]
    fn a_batch_expanding_past_the_limit_is_refused() {
        let zeros = vec![0u8; 1 << 20];
        for codec in Compression::ALL.into_iter().skip(1) {
            let compressed = codec.compress(&zeros).unwrap();
            let err = codec.decompress(&compressed, 64 << 10).unwrap_err();
            assert!(
                matches!(
                    err,
                    BatchError::TooLarge { .. } | BatchError::Decompress { .. }
                ),
                "{codec}: {err}"
            );
        }
    }

    #[test]
    fn damaged_input_is_an_error_not_a_panic() {
        let records = sample();
        for codec in Compression::ALL.into_iter().skip(1) {
            let mut compressed = codec.compress(&records).unwrap();
            let middle = compressed.len() / 2;
            compressed[middle] ^= 0xff;
            compressed.truncate(middle + 10);
            assert!(
                codec
                    .decompress(&compressed, DECOMPRESSED_BYTES_MAX)
                    .is_err(),
                "{codec}"
            );
        }
    }

    #[test]
    fn bare_snappy_as_librdkafka_writes_it_is_read_too() {
        let records = sample();
        let bare = snap::raw::Encoder::new().compress_vec(&records).unwrap();
        let back = Compression::Snappy
            .decompress(&bare, DECOMPRESSED_BYTES_MAX)
            .unwrap();
        assert!(back == records);
    }
}
