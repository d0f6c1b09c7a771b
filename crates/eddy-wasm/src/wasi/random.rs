//! `wasi:random` without randomness: a SplitMix64 stream the host seeds
//! before every call from the instance's seed and the batch's position
//! (its topic, partition and first offset). The same batch draws the same
//! numbers on every replay and machine; nothing drawn is secret.
//! `insecure-seed` is a constant, so hash maps iterate the same way on
//! every run.

use wasmtime::component::Linker;

use super::versioned;
use crate::state::State;

/// The constant returned by `insecure-seed`.
const INSECURE_SEED: (u64, u64) = (0x6564_6479_7365_6564, 0x0123_4567_89ab_cdef);

/// The most bytes one `get-random-bytes` call may ask for; a larger
/// request traps rather than make the host allocate it.
const BYTES_PER_REQUEST_MAX: u64 = 1 << 20;

/// The deterministic random stream of one call.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallRandom {
    state: u64,
}

impl CallRandom {
    /// Restarts the stream from a seed made of `parts`.
    pub(crate) fn reseed(&mut self, parts: &[u64]) {
        self.state = parts.iter().fold(0x9e37_79b9_7f4a_7c15, |acc, &part| {
            mix(acc ^ mix(part.wrapping_add(0x632b_e59b_d9b4_e019)))
        });
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    fn bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > BYTES_PER_REQUEST_MAX {
            wasmtime::bail!(
                "the processor asked for {len} random bytes at once, more than the {BYTES_PER_REQUEST_MAX} the host gives per request"
            );
        }
        let mut out = Vec::with_capacity(len as usize);
        while out.len() < len as usize {
            let word = self.next_u64().to_le_bytes();
            let take = (len as usize - out.len()).min(word.len());
            out.extend_from_slice(&word[..take]);
        }
        Ok(out)
    }
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    // `random` and `insecure` draw from the same deterministic stream.
    for (interface, bytes, u64) in [
        ("wasi:random/random", "get-random-bytes", "get-random-u64"),
        (
            "wasi:random/insecure",
            "get-insecure-random-bytes",
            "get-insecure-random-u64",
        ),
    ] {
        let mut random = linker.instance(&versioned(interface))?;
        random.func_wrap(bytes, |mut store, (len,): (u64,)| {
            Ok((store.data_mut().call.random.bytes(len)?,))
        })?;
        random.func_wrap(u64, |mut store, (): ()| {
            Ok((store.data_mut().call.random.next_u64(),))
        })?;
    }

    let mut seed = linker.instance(&versioned("wasi:random/insecure-seed"))?;
    seed.func_wrap("insecure-seed", |_, (): ()| Ok((INSECURE_SEED,)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_stream_and_another_seed_another() {
        let draw = |parts: &[u64]| {
            let mut r = CallRandom::default();
            r.reseed(parts);
            r.bytes(20).unwrap()
        };
        assert_eq!(draw(&[1, 2, 3]), draw(&[1, 2, 3]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[1, 2, 4]));
        assert_ne!(draw(&[1, 2, 3]), draw(&[3, 2, 1]));
        assert_eq!(draw(&[7]).len(), 20);
    }

    #[test]
    fn a_huge_request_is_refused_not_allocated() {
        let mut r = CallRandom::default();
        let err = r.bytes(u64::MAX).unwrap_err().to_string();
        assert!(err.contains("random bytes at once"), "{err}");
    }
}
