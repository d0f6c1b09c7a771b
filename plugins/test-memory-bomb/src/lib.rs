//! Test-only: `process` allocates 1 MiB blocks until allocation fails.
//! The host's memory cap must make the allocation fail, not the host.
//!
//! With the param `mode=try`, it allocates only for a record whose value is
//! `try`, asking for 256 MiB with `try_reserve` and coping with the
//! refusal, and panics on a record whose value is `panic`: the host must
//! report that panic as a panic, not as running out of memory.
//!
//! With `mode=leak`, each record's value is a number of MiB to allocate and
//! never free, as a guest whose memory only grows does.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Bomb {
    coping: bool,
    leaking: bool,
}

impl Processor for Bomb {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Bomb {
            coping: params.get("mode") == Some("try"),
            leaking: params.get("mode") == Some("leak"),
        })
    }

    fn process(&mut self, batch: &Batch, _out: &mut Output) -> Result<(), RecordError> {
        if self.leaking {
            for record in batch.records() {
                let text = std::str::from_utf8(record.value().unwrap_or_default()).unwrap_or("0");
                let mib: usize = text.parse().unwrap_or(0);
                std::mem::forget(std::hint::black_box(vec![0xCDu8; mib << 20]));
            }
            return Ok(());
        }
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
