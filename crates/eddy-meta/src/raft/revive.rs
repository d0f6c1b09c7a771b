//! openraft stops its core for good when storage fails (a full or failing
//! disk): the voter then takes no part in the quorum, and every proposal
//! made through it fails, until the process starts again. Here a watcher
//! starts it again in-process instead: once the core has stopped on an
//! error, it builds a new `Raft` over the same log store and state machine
//! and retries, with a growing pause, until one runs. Both stores stay
//! consistent when a write fails (a failed append is cut back before the
//! error is returned), so the new core starts from what is on disk.

use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use openraft::error::Fatal;

use super::log_store::FileLogStore;
use super::network::Network;
use super::state_machine::FileStateMachine;
use super::{RaftId, typ};

const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The voter's current Raft; replaced when a stopped one is started again.
pub(crate) struct Slot(RwLock<typ::Raft>);

impl Slot {
    pub(crate) fn new(raft: typ::Raft) -> Slot {
        Slot(RwLock::new(raft))
    }

    /// The Raft to call now (a cheap handle).
    pub(crate) fn get(&self) -> typ::Raft {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, raft: typ::Raft) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = raft;
    }
}

/// What a Raft is built from.
#[derive(Clone)]
pub(crate) struct Parts {
    pub id: RaftId,
    pub config: Arc<openraft::Config>,
    pub network: Network,
    pub log: FileLogStore,
    pub sm: FileStateMachine,
}

impl Parts {
    pub(crate) async fn start(&self) -> Result<typ::Raft, typ::Fatal> {
        openraft::Raft::new(
            self.id,
            self.config.clone(),
            self.network.clone(),
            self.log.clone(),
            self.sm.clone(),
        )
        .await
    }
}

/// Runs until the store is dropped or its Raft is shut down on purpose.
pub(crate) async fn watch(slot: Weak<Slot>, parts: Parts) {
    loop {
        let Some(mut metrics) = slot.upgrade().map(|s| s.get().metrics()) else {
            return;
        };
        let fatal = loop {
            let state = metrics.borrow_and_update().running_state.clone();
            if let Err(f) = state {
                break f;
            }
            if metrics.changed().await.is_err() {
                match metrics.borrow().running_state.clone() {
                    Err(f) => break f,
                    Ok(()) => return,
                }
            }
        };
        if matches!(fatal, Fatal::Stopped) {
            return;
        }
        tracing::error!(
            error = %fatal,
            "the metadata quorum stopped on this broker; it starts again by itself once its storage can be written: free space on the data directory's disk, or fix it"
        );
        let mut pause = RETRY_FIRST;
        loop {
            tokio::time::sleep(pause).await;
            let Some(slot) = slot.upgrade() else {
                return;
            };
            match parts.start().await {
                Ok(raft) => {
                    slot.set(raft);
                    tracing::info!("the metadata quorum runs on this broker again");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the metadata quorum again yet");
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }
}
