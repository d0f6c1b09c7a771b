//! The `eddy.v1.Processors` gRPC service over the [`Registry`].

use std::pin::Pin;
use std::sync::Arc;

use eddy_broker::auth::Caller;
use eddy_meta::{Operation, ResourceType};
use eddy_proto::v1 as pb;
use eddy_proto::v1::processors_server::Processors;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{CHUNK_BYTES, Chunks, Registry};

/// Serves the registry.
#[derive(Debug, Clone)]
pub struct ProcessorsService {
    registry: Arc<Registry>,
}

impl ProcessorsService {
    pub fn new(registry: Arc<Registry>) -> ProcessorsService {
        ProcessorsService { registry }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Processors for ProcessorsService {
    async fn upload(
        &self,
        req: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let caller = Caller::of(&req)?;
        // The name comes last, with the digest: refuse a caller who may
        // upload nothing at once, and check the name before storing.
        caller.check_some(ResourceType::Processor, Operation::Upload)?;
        caller.charge_upload()?;
        let checked = req.into_inner().map(move |message| {
            if let Ok(pb::UploadRequest {
                part: Some(pb::upload_request::Part::Done(done)),
            }) = &message
            {
                caller.check([done.name.as_str()])?;
            }
            message
        });
        Ok(Response::new(self.registry.upload(checked).await?))
    }

    async fn list(
        &self,
        req: Request<pb::ListProcessorsRequest>,
    ) -> Result<Response<pb::ListProcessorsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let processors = self
            .registry
            .list()
            .into_iter()
            .filter(|(latest, _)| {
                caller.may(ResourceType::Processor, &latest.name, Operation::Describe)
            })
            .map(|(latest, versions)| pb::ProcessorSummary {
                latest: Some(latest.to_pb()),
                versions,
            })
            .collect();
        Ok(Response::new(pb::ListProcessorsResponse { processors }))
    }

    async fn describe(
        &self,
        req: Request<pb::DescribeProcessorRequest>,
    ) -> Result<Response<pb::ProcessorDescription>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let name = req.into_inner().name;
        let versions = self.registry.describe(&name)?;
        Ok(Response::new(pb::ProcessorDescription {
            name,
            versions: versions.iter().map(|v| v.to_pb()).collect(),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteProcessorRequest>,
    ) -> Result<Response<pb::DeleteProcessorResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let req = req.into_inner();
        let versions = self.registry.delete(&req.name, req.version).await?;
        Ok(Response::new(pb::DeleteProcessorResponse { versions }))
    }

    type DownloadStream = BoxStream<pb::DownloadProcessorResponse>;

    async fn download(
        &self,
        req: Request<pb::DownloadProcessorRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let req = req.into_inner();
        let (stored, chunks) = self.registry.download(&req.name, req.version).await?;
        let first = Some(stored.to_pb());
        let chunks = match chunks {
            Chunks::Here(offsets) => offsets,
            Chunks::Fetched(bytes) => {
                let mut version = first;
                let messages: Vec<_> = (0..bytes.len().max(1))
                    .step_by(CHUNK_BYTES)
                    .map(|at| {
                        let chunk = bytes.slice(at..(at + CHUNK_BYTES).min(bytes.len()));
                        Ok(pb::DownloadProcessorResponse {
                            version: version.take(),
                            chunk,
                        })
                    })
                    .collect();
                return Ok(Response::new(Box::pin(futures::stream::iter(messages))));
            }
        };
        let registry = self.registry.clone();
        // One chunk read at a time, as the client takes them; the stream
        // ends after an error.
        let messages = futures::stream::unfold(Some((chunks.into_iter(), first)), move |state| {
            let registry = registry.clone();
            async move {
                let (mut rest, mut first) = state?;
                let at = rest.next()?;
                match registry.chunk(at).await {
                    Ok(chunk) => {
                        let version = first.take();
                        let message = pb::DownloadProcessorResponse { version, chunk };
                        Some((Ok(message), Some((rest, first))))
                    }
                    Err(e) => Some((Err(Status::from(e)), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(messages)))
    }
}
