//! Test-only: `process` allocates 1 MiB blocks until allocation fails.
//! The host's memory cap must make the allocation fail, not the host.
//!
//! With the param `mode=try`, it allocates only for a record whose value is
//! `try`, asking for 256 MiB with `try_reserve` and coping with the
//! refusal, and panics on a record whose value is `panic`: the host must
//! report that panic as a panic, not as running out of memory.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Bomb {
    coping: bool,
}

impl Processor for Bomb {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Bomb {
            coping: params.get("mode") == Some("try"),
        })
    }

    fn process(&mut self, batch: &Batch, _out: &mut Output) -> Result<(), RecordError> {
        if self.coping {
            for record in batch.records() {
                match record.value() {
                    Some(b"try") => {
                        let mut big: Vec<u8> = Vec::new();
                        let refused = big.try_reserve(256 << 20).is_err();
                        assert!(refused, "256 MiB should be past the memory cap");
                    }
                    Some(b"panic") => panic!("test-memory-bomb: asked to panic"),
                    _ => {}
                }
            }
            return Ok(());
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
        }
    }
}

eddy_processor::export_processor!(Bomb);
