//! The `eddy.v1.Pipelines` gRPC service over [`Control`].

use std::pin::Pin;
use std::sync::Arc;

use eddy_broker::Broker;
use eddy_broker::auth::{Caller, Principal};
use eddy_meta::{Operation, ResourceType};
use eddy_proto::v1 as pb;
use eddy_proto::v1::pipelines_server::Pipelines;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Control, Outcome, definitions};

/// Serves the control plane.
#[derive(Debug, Clone)]
pub struct PipelinesService {
    control: Arc<Control>,
    broker: Arc<Broker>,
}

impl PipelinesService {
    pub fn new(control: Arc<Control>, broker: Arc<Broker>) -> PipelinesService {
        PipelinesService { control, broker }
    }
}

/// Whoever applies a pipeline needs apply on it and every right it will
/// use: read on its inputs and its processor, write on its outputs and
/// dead-letter topic, create on the topics it creates. A manifest that
/// does not parse names no pipeline, so it needs apply on every one (`*`)
/// before its errors are told.
fn authorize_apply(caller: &Caller, broker: &Broker, text: &str) -> Result<(), Status> {
    let manifests: Vec<crate::manifest::Manifest> = crate::manifest::parse_numbered(text)
        .map(|numbered| numbered.into_iter().map(|(_, m)| m).collect())
        .unwrap_or_default();
    caller.check(manifests.iter().map(|m| m.name.as_str()))?;
    let state = broker.meta.state();
    for m in &manifests {
        let spec = &m.spec;
        for topic in &spec.input.topics {
            caller.check_op(ResourceType::Topic, topic, Operation::Read)?;
        }
        caller.check_op(
            ResourceType::Processor,
            &spec.processor.name,
            Operation::Read,
        )?;
        let written = spec
            .outputs
            .iter()
            .map(|o| o.topic.as_str())
            .chain(spec.on_error.dead_letter_topic());
        for topic in written {
            caller.check_op(ResourceType::Topic, topic, Operation::Write)?;
            if !state.topics.contains_key(topic) {
                caller.check_op(ResourceType::Topic, topic, Operation::Create)?;
            }
        }
    }
    Ok(())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pipelines for PipelinesService {
    async fn apply(
        &self,
        req: Request<pb::ApplyPipelinesRequest>,
    ) -> Result<Response<pb::ApplyPipelinesResponse>, Status> {
        let caller = Caller::of(&req)?;
        authorize_apply(&caller, &self.broker, &req.get_ref().manifest)?;
        // It runs with the rights of whoever applied it.
        let owner = match &caller.principal {
            Principal::User(name) => Some(format!("User:{name}")),
            Principal::Anonymous | Principal::Broker(_) => None,
        };
        let applied = self
            .control
            .apply(&req.into_inner().manifest, owner)
            .await?;
        let results = applied
            .into_iter()
            .map(|a| pb::ApplyResult {
                name: a.name,
                outcome: match a.outcome {
                    Outcome::Created => pb::ApplyOutcome::Created,
                    Outcome::Updated => pb::ApplyOutcome::Updated,
                    Outcome::Unchanged => pb::ApplyOutcome::Unchanged,
                } as i32,
                processor: a.processor,
                processor_version: a.processor_version,
                created_topics: a.created_topics,
            })
            .collect();
        Ok(Response::new(pb::ApplyPipelinesResponse { results }))
    }

    async fn list(
        &self,
        req: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let caller = Caller::of(&req)?;
        let mut pipelines = self.control.list().await?;
        pipelines.retain(|p| caller.may(ResourceType::Pipeline, &p.name, Operation::Describe));
        Ok(Response::new(pb::ListPipelinesResponse { pipelines }))
    }

    async fn describe(
        &self,
        req: Request<pb::PipelineRequest>,
    ) -> Result<Response<pb::PipelineDescription>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        Ok(Response::new(
            self.control.describe(&req.into_inner().name).await?,
        ))
    }

    async fn get(
        &self,
        req: Request<pb::PipelineRequest>,
    ) -> Result<Response<pb::GetPipelineResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let manifest = self.control.get(&req.into_inner().name)?;
        Ok(Response::new(pb::GetPipelineResponse { manifest }))
    }

    async fn pause(
        &self,
        req: Request<pb::PipelineRequest>,
    ) -> Result<Response<pb::PipelineSummary>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        Ok(Response::new(
            self.control
                .set_running(&req.into_inner().name, false)
                .await?,
        ))
    }

    async fn resume(
        &self,
        req: Request<pb::PipelineRequest>,
    ) -> Result<Response<pb::PipelineSummary>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        Ok(Response::new(
            self.control
                .set_running(&req.into_inner().name, true)
                .await?,
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::PipelineRequest>,
    ) -> Result<Response<pb::DeletePipelineResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        self.control.delete(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeletePipelineResponse {}))
    }

    type WatchStream = BoxStream<pb::PipelineSet>;

    async fn watch(
        &self,
        _req: Request<pb::WatchPipelinesRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let mut changes = self.broker.meta.subscribe();
        let mut shutdown = self.broker.shutdown_signal();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let set = definitions(&changes.borrow_and_update());
                if last.as_ref() != Some(&set) {
                    if tx.send(Ok(set.clone())).await.is_err() {
                        return;
                    }
                    last = Some(set);
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report(
        &self,
        req: Request<pb::WorkerReport>,
    ) -> Result<Response<pb::WorkerReportResponse>, Status> {
        self.control.report(req.into_inner())?;
        Ok(Response::new(pb::WorkerReportResponse {}))
    }

    async fn fail(
        &self,
        req: Request<pb::FailPipelineRequest>,
    ) -> Result<Response<pb::PipelineSummary>, Status> {
        let req = req.into_inner();
        let error = req
            .error
            .ok_or_else(|| Status::invalid_argument("a failure names its record and error"))?;
        Ok(Response::new(
            self.control.fail(&req.name, &req.id, error).await?,
        ))
    }
}
