//! The processor registry and pipelines over a [`Client`].

use bytes::Bytes;
use eddy_proto::v1::{
    ApplyPipelinesRequest, ApplyPipelinesResponse, DeleteProcessorRequest,
    DescribeProcessorRequest, DownloadProcessorRequest, FailPipelineRequest, ListPipelinesRequest,
    ListProcessorsRequest, PipelineDescription, PipelineError, PipelineRequest, PipelineSet,
    PipelineSummary, ProcessorDescription, ProcessorSummary, ProcessorVersion, UploadDone,
    UploadRequest, UploadResponse, WatchPipelinesRequest, WorkerReport,
    pipelines_client::PipelinesClient, processors_client::ProcessorsClient, upload_request,
};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

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

    fn rpc(&self) -> ProcessorsClient<Channel> {
        ProcessorsClient::new(self.client.bootstrap_channel())
            .max_decoding_message_size(self.client.config().response_bytes_max)
            .max_encoding_message_size(self.client.config().request_bytes_max)
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
        let mut total = 0u64;
        let requests = chunks
            .into_iter()
            .map(move |chunk| {
                total += chunk.len() as u64;
                sent(total);
                UploadRequest {
                    part: Some(upload_request::Part::Chunk(chunk)),
                }
            })
            .chain(std::iter::once(done));
        Ok(self
            .rpc()
            .upload(tokio_stream::iter(requests))
            .await?
            .into_inner())
    }

    pub async fn list(&self) -> Result<Vec<ProcessorSummary>> {
        Ok(self
            .rpc()
            .list(ListProcessorsRequest {})
            .await?
            .into_inner()
            .processors)
    }

    pub async fn describe(&self, name: &str) -> Result<ProcessorDescription> {
        let request = DescribeProcessorRequest {
            name: name.to_string(),
        };
        Ok(self.rpc().describe(request).await?.into_inner())
    }

    /// Deletes one version, or all of them; returns the versions deleted.
    pub async fn delete(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>> {
        let request = DeleteProcessorRequest {
            name: name.to_string(),
            version,
        };
        Ok(self.rpc().delete(request).await?.into_inner().versions)
    }

    /// A version's component (0: the latest), checked against its sha256.
    pub async fn download(&self, name: &str, version: u32) -> Result<(ProcessorVersion, Bytes)> {
        let request = DownloadProcessorRequest {
            name: name.to_string(),
            version,
        };
        let mut stream = self.rpc().download(request).await?.into_inner();
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

    fn rpc(&self) -> PipelinesClient<Channel> {
        PipelinesClient::new(self.client.bootstrap_channel())
            .max_decoding_message_size(self.client.config().response_bytes_max)
            .max_encoding_message_size(self.client.config().request_bytes_max)
    }

    /// Creates or updates the pipelines of a YAML manifest.
    pub async fn apply(&self, manifest: &str) -> Result<ApplyPipelinesResponse> {
        let request = ApplyPipelinesRequest {
            manifest: manifest.to_string(),
        };
        Ok(self.rpc().apply(request).await?.into_inner())
    }

    pub async fn list(&self) -> Result<Vec<PipelineSummary>> {
        Ok(self
            .rpc()
            .list(ListPipelinesRequest {})
            .await?
            .into_inner()
            .pipelines)
    }

    pub async fn describe(&self, name: &str) -> Result<PipelineDescription> {
        Ok(self.rpc().describe(named(name)).await?.into_inner())
    }

    /// The stored manifest as canonical YAML.
    pub async fn get(&self, name: &str) -> Result<String> {
        Ok(self.rpc().get(named(name)).await?.into_inner().manifest)
    }

    pub async fn pause(&self, name: &str) -> Result<PipelineSummary> {
        Ok(self.rpc().pause(named(name)).await?.into_inner())
    }

    pub async fn resume(&self, name: &str) -> Result<PipelineSummary> {
        Ok(self.rpc().resume(named(name)).await?.into_inner())
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        self.rpc().delete(named(name)).await?;
        Ok(())
    }

    /// Pipeline definitions: the current set, then a new one after every change.
    pub async fn watch(&self) -> Result<tonic::Streaming<PipelineSet>> {
        Ok(self
            .rpc()
            .watch(WatchPipelinesRequest {})
            .await?
            .into_inner())
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
        self.rpc().fail(request).await?;
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
