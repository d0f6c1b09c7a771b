//! The processor registry and pipelines over a [`Client`].

use std::future::Future;

use bytes::Bytes;
use eddy_proto::AuthChannel as Channel;
use eddy_proto::v1::{
    ApplyPipelinesRequest, ApplyPipelinesResponse, DeleteProcessorRequest,
    DescribeProcessorRequest, DownloadProcessorRequest, FailPipelineRequest, ListPipelinesRequest,
    ListProcessorsRequest, PipelineDescription, PipelineError, PipelineRequest, PipelineSet,
    PipelineSummary, ProcessorDescription, ProcessorSummary, ProcessorVersion, UploadDone,
    UploadRequest, UploadResponse, WatchPipelinesRequest, WorkerReport,
    pipelines_client::PipelinesClient, processors_client::ProcessorsClient, upload_request,
};
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::error::{ClientError, Result};

/// How long a worker's report may take to reach one broker.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes per upload chunk: the most the broker accepts in one message.
pub const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// The processor registry.
#[derive(Debug, Clone)]
pub struct Processors {
    client: Client,
}

impl Processors {
    pub fn new(client: Client) -> Processors {
        Processors { client }
    }

    /// Makes `call` at any broker that answers (see
    /// [`Client::on_any_broker`]): each serves the registry (one that does
    /// not lead `__processors` forwards to the one that does).
    async fn on_any<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(ProcessorsClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.client
            .on_any_broker(|channel| call(self.rpc(channel)))
            .await
    }

    fn rpc(&self, channel: Channel) -> ProcessorsClient<Channel> {
        let config = self.client.config();
        ProcessorsClient::new(channel)
            .max_decoding_message_size(config.response_bytes_max)
            .max_encoding_message_size(config.request_bytes_max)
    }

    /// Uploads a component under `name`. `sent` is told the bytes sent so
    /// far as the upload proceeds (for a progress bar).
    pub async fn upload(
        &self,
        name: &str,
        component: Bytes,
        sent: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<UploadResponse> {
        let sha256 = hex(&Sha256::digest(&component));
        let chunks: Vec<Bytes> = (0..component.len())
            .step_by(UPLOAD_CHUNK_BYTES)
            .map(|start| component.slice(start..(start + UPLOAD_CHUNK_BYTES).min(component.len())))
            .collect();
        let done = UploadRequest {
            part: Some(upload_request::Part::Done(UploadDone {
                name: name.to_string(),
                sha256,
            })),
        };
        // Sent again, whole, to another broker if the first cannot be
        // reached; the same bytes under the same name register once. Not
        // bounded by `request_timeout_ms`: it takes as long as its size.
        let sent = std::sync::Arc::new(sent);
        self.client
            .on_any_broker_unbounded(|channel| {
                let mut rpc = self.rpc(channel);
                let sent = sent.clone();
                let mut total = 0u64;
                let requests = chunks
                    .clone()
                    .into_iter()
                    .map(move |chunk| {
                        total += chunk.len() as u64;
                        sent(total);
                        UploadRequest {
                            part: Some(upload_request::Part::Chunk(chunk)),
                        }
                    })
                    .chain(std::iter::once(done.clone()));
                async move { rpc.upload(tokio_stream::iter(requests)).await }
            })
            .await
    }

    pub async fn list(&self) -> Result<Vec<ProcessorSummary>> {
        let list = self
            .on_any(|mut rpc| async move { rpc.list(ListProcessorsRequest {}).await })
            .await?;
        Ok(list.processors)
    }

    pub async fn describe(&self, name: &str) -> Result<ProcessorDescription> {
        let request = DescribeProcessorRequest {
            name: name.to_string(),
        };
        self.on_any(|mut rpc| {
            let request = request.clone();
            async move { rpc.describe(request).await }
        })
        .await
    }

    /// Deletes one version, or all of them; returns the versions deleted.
    pub async fn delete(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>> {
        let request = DeleteProcessorRequest {
            name: name.to_string(),
            version,
        };
        let deleted = self
            .on_any(|mut rpc| {
                let request = request.clone();
                async move { rpc.delete(request).await }
            })
            .await?;
        Ok(deleted.versions)
    }

    /// A version's component (0: the latest), checked against its sha256.
    pub async fn download(&self, name: &str, version: u32) -> Result<(ProcessorVersion, Bytes)> {
        let request = DownloadProcessorRequest {
            name: name.to_string(),
            version,
        };
        let mut stream = self
            .on_any(|mut rpc| {
                let request = request.clone();
                async move { rpc.download(request).await }
            })
            .await?;
        let mut found: Option<ProcessorVersion> = None;
        let mut bytes = Vec::new();
        while let Some(message) = stream.message().await? {
            if let Some(v) = message.version {
                bytes.reserve(usize::try_from(v.size_bytes).unwrap_or(0));
                found = Some(v);
            }
            bytes.extend_from_slice(&message.chunk);
            let limit = found.as_ref().map_or(0, |v| v.size_bytes);
            if bytes.len() as u64 > limit {
                return Err(ClientError::Invalid(format!(
                    "the broker sent more than the {limit} bytes of processor {name:?}"
                )));
            }
        }
        let version = found.ok_or_else(|| {
            ClientError::Invalid(format!("the broker sent no version of processor {name:?}"))
        })?;
        let got = hex(&Sha256::digest(&bytes));
        if got != version.sha256 || bytes.len() as u64 != version.size_bytes {
            return Err(ClientError::Invalid(format!(
                "processor {name:?} version {} arrived damaged ({} bytes with sha256 {got}, expected {} bytes with {})",
                version.version,
                bytes.len(),
                version.size_bytes,
                version.sha256
            )));
        }
        Ok((version, Bytes::from(bytes)))
    }
}

/// Pipelines.
#[derive(Debug, Clone)]
pub struct Pipelines {
    client: Client,
}

impl Pipelines {
    pub fn new(client: Client) -> Pipelines {
        Pipelines { client }
    }

    /// Makes `call` at any broker that answers (see
    /// [`Client::on_any_broker`]): each serves the pipeline definitions.
    async fn on_any<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(PipelinesClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let config = self.client.config();
        self.client
            .on_any_broker(|channel| {
                call(
                    PipelinesClient::new(channel)
                        .max_decoding_message_size(config.response_bytes_max)
                        .max_encoding_message_size(config.request_bytes_max),
                )
            })
            .await
    }

    /// Creates or updates the pipelines of a YAML manifest.
    pub async fn apply(&self, manifest: &str) -> Result<ApplyPipelinesResponse> {
        let request = ApplyPipelinesRequest {
            manifest: manifest.to_string(),
        };
        self.on_any(|mut rpc| {
            let request = request.clone();
            async move { rpc.apply(request).await }
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<PipelineSummary>> {
        let list = self
            .on_any(|mut rpc| async move { rpc.list(ListPipelinesRequest {}).await })
            .await?;
        Ok(list.pipelines)
    }

    pub async fn describe(&self, name: &str) -> Result<PipelineDescription> {
        self.on_any(|mut rpc| async move { rpc.describe(named(name)).await })
            .await
    }

    /// The stored manifest as canonical YAML.
    pub async fn get(&self, name: &str) -> Result<String> {
        let got = self
            .on_any(|mut rpc| async move { rpc.get(named(name)).await })
            .await?;
        Ok(got.manifest)
    }

    pub async fn pause(&self, name: &str) -> Result<PipelineSummary> {
        self.on_any(|mut rpc| async move { rpc.pause(named(name)).await })
            .await
    }

    pub async fn resume(&self, name: &str) -> Result<PipelineSummary> {
        self.on_any(|mut rpc| async move { rpc.resume(named(name)).await })
            .await
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        self.on_any(|mut rpc| async move { rpc.delete(named(name)).await })
            .await?;
        Ok(())
    }

    /// Pipeline definitions: the current set, then a new one after every change.
    pub async fn watch(&self) -> Result<tonic::Streaming<PipelineSet>> {
        self.on_any(|mut rpc| async move { rpc.watch(WatchPipelinesRequest {}).await })
            .await
    }

    /// A worker's status report.
    /// Sends a worker's report to every broker this client knows of, so
    /// that `pipeline describe` on any of them counts it; succeeds if one
    /// took it. A broker that does not answer within a second is skipped.
    pub async fn report(&self, report: WorkerReport) -> Result<()> {
        let mut sends = tokio::task::JoinSet::new();
        for address in self.client.broker_addresses() {
            let client = self.client.clone();
            let report = report.clone();
            sends.spawn(async move {
                let send = async {
                    let channel = client.channel_to(&address).await?;
                    PipelinesClient::new(channel).report(report).await?;
                    Ok::<_, ClientError>(())
                };
                match tokio::time::timeout(REPORT_TIMEOUT, send).await {
                    Ok(sent) => sent,
                    Err(_) => Err(ClientError::Connect {
                        address,
                        reason: format!("no answer within {REPORT_TIMEOUT:?}"),
                    }),
                }
            });
        }
        let mut last = None;
        let mut any = false;
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(Ok(())) => any = true,
                Ok(Err(e)) => last = Some(e),
                Err(e) => last = Some(ClientError::Invalid(format!("report task failed: {e}"))),
            }
        }
        match (any, last) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Marks a pipeline failed at a record.
    pub async fn fail(&self, name: &str, id: &str, error: PipelineError) -> Result<()> {
        let request = FailPipelineRequest {
            name: name.to_string(),
            id: id.to_string(),
            error: Some(error),
        };
        self.on_any(|mut rpc| {
            let request = request.clone();
            async move { rpc.fail(request).await }
        })
        .await?;
        Ok(())
    }
}

fn named(name: &str) -> PipelineRequest {
    PipelineRequest {
        name: name.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
