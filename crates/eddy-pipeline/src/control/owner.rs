//! Pipelines run with their owner's rights: whoever applied one needed
//! read on its inputs and processor and write on its outputs (checked by
//! the service at apply), and keeps needing them. The metadata leader's
//! control plane checks every running pipeline's owner against the ACLs
//! as they change, and fails a pipeline whose owner lost a right, with the
//! reason in `pipeline describe`; `resume` refuses until it is granted.

use std::sync::Arc;
use std::time::Duration;

use eddy_broker::auth::Principal;
use eddy_meta::{
    Command, Operation, PipelineFailure, PipelineMeta, PipelineRunState, ResourceType,
};

use super::Control;

/// How often running pipelines' owners are checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The failure kind a lost right shows as.
pub const PERMISSION_KIND: &str = "permission";

impl Control {
    /// Which right `p`'s owner lacks, if any. Pipelines without an owner
    /// (applied while authentication was off) run with the cluster's.
    pub(crate) fn lost_right(&self, p: &PipelineMeta) -> Option<String> {
        let owner = p.owner.as_ref()?;
        let principal = Principal::User(owner.strip_prefix("User:").unwrap_or(owner).to_string());
        let authorizer = &self.broker.authorizer;
        let needs = p
            .inputs
            .iter()
            .map(|t| (ResourceType::Topic, t.as_str(), Operation::Read))
            .chain(std::iter::once((
                ResourceType::Processor,
                p.processor.as_str(),
                Operation::Read,
            )))
            .chain(
                p.outputs
                    .iter()
                    .chain(&p.dead_letter)
                    .map(|t| (ResourceType::Topic, t.as_str(), Operation::Write)),
            );
        for (resource, name, operation) in needs {
            if !authorizer.allows(&principal, resource, name, operation) {
                return Some(format!(
                    "its owner {owner} may no longer {operation} {resource} {name:?}; grant it (`eddy acl add --allow {owner} --operation {operation} --{resource} {name}`) and run `eddy pipeline resume {}`",
                    p.name
                ));
            }
        }
        None
    }

    /// Fails running pipelines whose owner lost a right, on the metadata
    /// leader (one broker decides), until the broker shuts down.
    pub async fn watch_owners(self: Arc<Self>) {
        let mut shutdown = self.broker.shutdown_signal();
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if !self.broker.authorizer.config().required
                || self.broker.meta.leader() != Some(self.broker.config.node_id)
            {
                continue;
            }
            let state = self.broker.meta.state();
            for p in state.pipelines.values() {
                if p.state != PipelineRunState::Running {
                    continue;
                }
                let Some(message) = self.lost_right(p) else {
                    continue;
                };
                tracing::warn!(target: "eddy::audit", pipeline = %p.name, owner = ?p.owner, "{message}");
                let failure = PipelineFailure {
                    topic: String::new(),
                    partition: 0,
                    offset: 0,
                    kind: PERMISSION_KIND.to_string(),
                    message,
                    at_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64),
                };
                let failed = Command::SetPipelineState {
                    name: p.name.clone(),
                    id: p.id,
                    state: PipelineRunState::Failed(failure),
                };
                if let Err(e) = self.broker.meta.propose(failed).await {
                    tracing::warn!(pipeline = %p.name, error = %e, "could not stop a pipeline whose owner lost a right");
                }
            }
        }
    }
}
