//! The metadata store: the state machine plus its durable command log.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};

use crate::command_log::CommandLog;
use crate::error::{MetaError, Result};
use crate::state::{Command, MetaState};

const CLUSTER_ID_FILE: &str = "cluster-id";
const LOG_FILE: &str = "commands.log";

/// Cluster metadata: read the current state at any time, change it only by
/// proposing commands.
#[derive(Debug)]
pub struct MetaStore {
    /// The async lock orders proposals; the inner one lets the blocking
    /// pool do the write and fsync, so no runtime worker waits on the disk.
    log: Mutex<Arc<std::sync::Mutex<CommandLog>>>,
    current: watch::Sender<Arc<MetaState>>,
}

impl MetaStore {
    /// Opens (or starts) the metadata in `dir` and replays its commands.
    pub fn open(dir: &Path) -> Result<MetaStore> {
        std::fs::create_dir_all(dir).map_err(MetaError::io("creating", dir))?;
        let id_path = dir.join(CLUSTER_ID_FILE);
        let cluster_id = match std::fs::read_to_string(&id_path) {
            Ok(id) => id.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = uuid::Uuid::new_v4().to_string();
                std::fs::write(&id_path, &id).map_err(MetaError::io("writing", &id_path))?;
                id
            }
            Err(e) => return Err(MetaError::io("reading", &id_path)(e)),
        };
        let (log, commands) = CommandLog::open(&dir.join(LOG_FILE))?;
        let mut state = MetaState {
            cluster_id,
            ..MetaState::default()
        };
        for cmd in &commands {
            // Commands were checked before they were logged; a command that
            // no longer passes means the log was edited by hand.
            if let Err(e) = state.check(cmd) {
                return Err(MetaError::CorruptLog {
                    path: dir.join(LOG_FILE),
                    line: state.version as usize + 1,
                    reason: format!("command cannot be applied: {e}"),
                });
            }
            state.apply(cmd);
        }
        Ok(MetaStore {
            log: Mutex::new(Arc::new(std::sync::Mutex::new(log))),
            current: watch::Sender::new(Arc::new(state)),
        })
    }

    /// The current state.
    pub fn state(&self) -> Arc<MetaState> {
        self.current.borrow().clone()
    }

    /// Notified with every new state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        self.current.subscribe()
    }

    /// Checks `cmd`, makes it durable, applies it and returns the new state.
    /// Proposals are applied one at a time, in the order they get here.
    pub async fn propose(&self, cmd: Command) -> Result<Arc<MetaState>> {
        let log = self.log.lock().await;
        let state = self.state();
        state.check(&cmd)?;
        let (file, logged) = (log.clone(), cmd.clone());
        tokio::task::spawn_blocking(move || {
            file.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .append(&logged)
        })
        .await
        .map_err(|e| MetaError::Invalid(format!("the metadata write did not finish: {e}")))??;
        let mut next = (*state).clone();
        next.apply(&cmd);
        let next = Arc::new(next);
        self.current.send_replace(next.clone());
        Ok(next)
    }
}
