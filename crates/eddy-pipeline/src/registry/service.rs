//! The `eddy.v1.Processors` gRPC service over the [`Registry`].

use std::pin::Pin;
use std::sync::Arc;

use eddy_proto::v1 as pb;
use eddy_proto::v1::processors_server::Processors;
use futures::Stream;
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
        Ok(Response::new(self.registry.upload(req.into_inner()).await?))
    }

    async fn list(
        &self,
        _req: Request<pb::ListProcessorsRequest>,
    ) -> Result<Response<pb::ListProcessorsResponse>, Status> {
        let processors = self
            .registry
            .list()
            .into_iter()
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
        let req = req.into_inner();
        let versions = self.registry.delete(&req.name, req.version).await?;
        Ok(Response::new(pb::DeleteProcessorResponse { versions }))
    }

    type DownloadStream = BoxStream<pb::DownloadProcessorResponse>;

    async fn download(
        &self,
        req: Request<pb::DownloadProcessorRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
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
