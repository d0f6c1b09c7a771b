//! Seeded randomness: one seed drives every random choice of a run, so a
//! failing run can be replayed.

use std::time::Duration;

/// A small seeded generator, so a failing run can be replayed.
#[derive(Debug)]
pub struct Rng {
    seed: u64,
    state: u64,
}

impl Rng {
    /// Seeded from `EDDY_TEST_SEED`, or the clock; prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("EDDY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with EDDY_TEST_SEED={seed})");
        Rng::new(seed)
    }

    /// Seeded with `seed`, spread first (SplitMix64's finaliser) so that
    /// small neighbouring seeds start far apart.
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng {
            seed,
            state: (z ^ (z >> 31)) | 1,
        }
    }

    /// Picks one of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// The seed that replays this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}
