//! Test-only: a processor built against `eddy:processor@0.2.0`, the
//! world as it was before the `state` interface (its WIT is a verbatim
//! copy of that version). It forwards every record and logs through the
//! 0.2.0 `host` interface; the host must still load and run it.

#[allow(unsafe_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "eddy:processor/processor@0.2.0" });

    use self::eddy::processor::host::{Level, log};

    struct Forward;

    /// `presence` bit of a forwarded record.
    const FORWARDED: u8 = 16;

    impl Guest for Forward {
        fn init(_params: Vec<Param>) -> Result<(), String> {
            log(Level::Info, "a 0.2.0 processor started");
            Ok(())
        }

        fn process(batch: InputBatch) -> Result<OutputBatch, RecordError> {
            let n = batch.presence.len();
            Ok(OutputBatch {
                data: Vec::new(),
                presence: vec![FORWARDED; n],
                layout: (0..n as u32).flat_map(|i| [i, 0, 0, 0, 0, 0, 0]).collect(),
                timestamps: vec![0; n],
                headers: Vec::new(),
                topics: Vec::new(),
            })
        }
    }

    export!(Forward);
}
