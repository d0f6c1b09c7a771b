//! Test-only: floating point whose NaN results differ between machines
//! (and between wasm engines) unless the host canonicalises NaNs.
//!
//! Each record's value is two little-endian `f64`, `a` and `b`; the output
//! value is three little-endian `u64`: the bits of `a + b`, of `a / b`, and
//! (widened) of `a as f32 + b as f32`.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct Nan;

impl Processor for Nan {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Nan)
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        eddy_processor::each(batch, out, |record, out| {
            let value = record.value().unwrap_or_default();
            let second = value.get(8..).and_then(<[u8]>::first_chunk::<8>);
            let (Some(a), Some(b)) = (value.first_chunk::<8>(), second) else {
                return Err("expected two little-endian f64 (16 bytes)".to_owned());
            };
            let (a, b) = (f64::from_le_bytes(*a), f64::from_le_bytes(*b));
            let mut bits = Vec::with_capacity(24);
            bits.extend_from_slice(&(a + b).to_bits().to_le_bytes());
            bits.extend_from_slice(&(a / b).to_bits().to_le_bytes());
            let single = (a as f32) + (b as f32);
            bits.extend_from_slice(&u64::from(single.to_bits()).to_le_bytes());
            out.push(OutputRecord::value(&bits));
            Ok(())
        })
    }
}

eddy_processor::export_processor!(Nan);
