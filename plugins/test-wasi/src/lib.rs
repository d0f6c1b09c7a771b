//! Test-only: asks WASI for what language runtimes ask it for — the time,
//! random numbers, a file, a connection, a name lookup, the environment —
//! so that tests see that each call gives nothing away and answers the same
//! on every replay. The parameter `use` picks what to ask for; each input
//! record gives one output whose value is what the processor got.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct UsesWasi {
    what: String,
}

impl Processor for UsesWasi {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(UsesWasi {
            what: params.require("use")?.to_owned(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        eddy_processor::each(batch, out, |_record, out| {
            let seen = self.ask()?;
            out.push(OutputRecord::value(seen.as_bytes()));
            Ok(())
        })
    }
}

impl UsesWasi {
    fn ask(&self) -> Result<String, String> {
        Ok(match self.what.as_str() {
            "clock" => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?;
                now.as_millis().to_string()
            }
            "monotonic" => {
                let start = Instant::now();
                std::thread::sleep(Duration::from_millis(50));
                start.elapsed().as_nanos().to_string()
            }
            "random" => {
                let n = getrandom::u64().map_err(|e| e.to_string())?;
                format!("{n:016x}")
            }
            "file" => match std::fs::File::open("/etc/passwd") {
                Ok(mut f) => {
                    let mut text = String::new();
                    let _ = f.read_to_string(&mut text);
                    format!("read {} bytes", text.len())
                }
                Err(e) => format!("error: {e}"),
            },
            "connect" => match TcpStream::connect("127.0.0.1:9") {
                Ok(_) => "connected".to_owned(),
                Err(e) => format!("error: {e}"),
            },
            "lookup" => match ("localhost", 80).to_socket_addrs() {
                Ok(addrs) => format!("resolved {} addresses", addrs.count()),
                Err(e) => format!("error: {e}"),
            },
            "env" => format!(
                "{} variables, {} arguments",
                std::env::vars().count(),
                std::env::args().count()
            ),
            other => return Err(format!("unknown use {other:?}")),
        })
    }
}

eddy_processor::export_processor!(UsesWasi);
