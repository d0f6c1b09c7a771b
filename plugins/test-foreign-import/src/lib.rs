//! Test-only: a processor that imports an interface no Eddy host offers
//! (`acme:secrets/vault`). The host must refuse it, naming the import.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

#[allow(unsafe_code)]
mod vault {
    wit_bindgen::generate!({
        inline: "
            package acme:secrets@0.1.0;
            interface vault {
                get: func(name: string) -> string;
            }
            world imports {
                import vault;
            }
        ",
        world: "acme:secrets/imports@0.1.0",
    });
}

struct Leaky;

impl Processor for Leaky {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Leaky)
    }

    fn process(&mut self, _batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let secret = vault::acme::secrets::vault::get("database-password");
        out.push(OutputRecord::value(secret.as_bytes()));
        Ok(())
    }
}

eddy_processor::export_processor!(Leaky);
