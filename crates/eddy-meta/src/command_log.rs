//! The local command log Eddy kept before the metadata quorum (one line
//! per command, `CRC32C-hex SP json LF`), read once to move its commands
//! into the quorum.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::error::{MetaError, Result};
use crate::state::Command;

#[derive(Debug)]
pub(crate) struct CommandLog;

impl CommandLog {
    /// Opens the log and returns the commands in it. A damaged last line is
    /// a write cut short by a crash and is dropped; damage before the last
    /// line is corruption and an error.
    pub fn open(path: &Path) -> Result<(CommandLog, Vec<Command>)> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(MetaError::io("opening", path))?;
        let mut commands = Vec::new();
        let mut good_len = 0u64;
        let mut damage: Option<(usize, String)> = None;
        let mut last_len = 0u64;
        let reader = BufReader::new(&file);
        for (i, line) in reader.split(b'\n').enumerate() {
            let line = line.map_err(MetaError::io("reading", path))?;
            if let Some((line_no, reason)) = damage.take() {
                return Err(MetaError::CorruptLog {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                });
            }
            match decode(&line) {
                Ok(cmd) => {
                    commands.push(cmd);
                    last_len = line.len() as u64 + 1;
                    good_len += last_len;
                }
                Err(reason) => damage = Some((i + 1, reason)),
            }
        }
        let size = file
            .metadata()
            .map_err(MetaError::io("reading size of", path))?
            .len();
        if good_len > size {
            // The last command lost its newline: its write was cut short
            // before the fsync that acknowledges it, so it never happened.
            commands.pop();
            good_len -= last_len;
        }
        if size != good_len {
            tracing::warn!(path = %path.display(), dropped_bytes = size - good_len, "dropping a torn last metadata command");
            file.set_len(good_len)
                .map_err(MetaError::io("truncating", path))?;
        }
        Ok((CommandLog, commands))
    }
}

fn decode(line: &[u8]) -> std::result::Result<Command, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let (crc, json) = text.split_once(' ').ok_or("no checksum")?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| "bad checksum field".to_string())?;
    if crc32c::crc32c(json.as_bytes()) != crc {
        return Err("checksum mismatch".to_string());
    }
    serde_json::from_str(json).map_err(|e| format!("not a command: {e}"))
}
