//! Test-only: `process` allocates 1 MiB blocks until allocation fails.
//! The host's memory cap must make the allocation fail, not the host.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Bomb;

impl Processor for Bomb {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Bomb)
    }

    fn process(&mut self, _batch: &Batch, _out: &mut Output) -> Result<(), RecordError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
        }
    }
}

eddy_processor::export_processor!(Bomb);
