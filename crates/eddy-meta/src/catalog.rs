//! Processors and pipelines as the cluster knows them: which component
//! versions exist (their bytes live in the internal `__processors` topic,
//! not here) and which pipelines run them between which topics.
//!
//! A pipeline's spec is stored as the JSON its owner (`eddy-pipeline`)
//! wrote; this crate reads only the fields it must check against the rest
//! of the metadata: the processor version and the topics.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{MetaError, Result};
use crate::state::MetaState;

/// Longest processor or pipeline name.
pub const NAME_LEN_MAX: usize = 128;

/// Processor and pipeline names: 1–128 characters of `[a-zA-Z0-9._-]`,
/// not `.` or `..`.
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let bad = |reason: &str| MetaError::Invalid(format!("invalid {kind} name {name:?}: {reason}"));
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(bad("use 1 to 128 characters"));
    }
    if name == "." || name == ".." {
        return Err(bad("\".\" and \"..\" are not allowed"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad("use only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// One stored version of a processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorVersion {
    /// Counts up from 1 per name.
    pub version: u32,
    /// The component's sha256, 64 lowercase hex digits.
    pub sha256: String,
    pub size_bytes: u64,
    pub uploaded_at_ms: i64,
}

/// Every stored version of one processor name, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessorMeta {
    pub versions: Vec<ProcessorVersion>,
}

impl ProcessorMeta {
    pub fn version(&self, version: u32) -> Option<&ProcessorVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn latest(&self) -> Option<&ProcessorVersion> {
        self.versions.last()
    }

    pub fn by_sha256(&self, sha256: &str) -> Option<&ProcessorVersion> {
        self.versions.iter().find(|v| v.sha256 == sha256)
    }
}

/// One incarnation of a pipeline: deleted and applied again under the same
/// name, it gets a new id (and its tasks new producer identities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PipelineId(pub u128);

impl PipelineId {
    pub fn random() -> PipelineId {
        PipelineId(uuid::Uuid::new_v4().as_u128())
    }
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).simple().fmt(f)
    }
}

/// Where a failed pipeline stopped and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineFailure {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// What kind of failure (record-error, timeout, panic, …).
    pub kind: String,
    pub message: String,
    pub at_ms: i64,
}

/// Whether workers run a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PipelineRunState {
    Running,
    Paused,
    /// Stopped at a record it could not process (`onError: stop`).
    Failed(PipelineFailure),
}

/// A pipeline definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineMeta {
    pub name: String,
    pub id: PipelineId,
    /// 1 when created, one more with every change to the definition.
    pub revision: u64,
    pub processor: String,
    pub processor_version: u32,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub dead_letter: Option<String>,
    /// The spec as its owner wrote it (JSON).
    pub spec: String,
    pub state: PipelineRunState,
    /// Who applied it last (`User:NAME`): it runs with that principal's
    /// rights. `None` when applied without authentication.
    #[serde(default)]
    pub owner: Option<String>,
}

impl PipelineMeta {
    /// Every topic the pipeline reads or writes.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .chain(&self.dead_letter)
            .map(String::as_str)
    }
}

impl MetaState {
    pub fn processor(&self, name: &str) -> Result<&ProcessorMeta> {
        self.processors.get(name).ok_or_else(|| {
            MetaError::NotFound(format!(
                "processor {name:?} does not exist; upload it with `eddy processor upload {name} FILE.wasm` or list processors with `eddy processor list`"
            ))
        })
    }

    pub fn pipeline(&self, name: &str) -> Result<&PipelineMeta> {
        self.pipelines.get(name).ok_or_else(|| {
            MetaError::NotFound(format!(
                "pipeline {name:?} does not exist; list pipelines with `eddy pipeline list`"
            ))
        })
    }

    /// The pipelines running `processor` at `version` (any version: `None`).
    pub fn pipelines_using(&self, processor: &str, version: Option<u32>) -> Vec<&PipelineMeta> {
        self.pipelines
            .values()
            .filter(|p| {
                p.processor == processor && version.is_none_or(|v| v == p.processor_version)
            })
            .collect()
    }

    pub(crate) fn check_register_processor(&self, name: &str, v: &ProcessorVersion) -> Result<()> {
        validate_name("processor", name)?;
        let hex = v.sha256.len() == 64
            && v.sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(MetaError::Invalid(format!(
                "{:?} is not a sha256 (64 lowercase hex digits)",
                v.sha256
            )));
        }
        let expected = self
            .processors
            .get(name)
            .and_then(ProcessorMeta::latest)
            .map_or(1, |l| l.version + 1);
        let repeat = self
            .processors
            .get(name)
            .and_then(|p| p.by_sha256(&v.sha256))
            .is_some();
        if !repeat && v.version != expected {
            return Err(MetaError::Invalid(format!(
                "processor {name:?} version {} cannot be registered: the next version is {expected}",
                v.version
            )));
        }
        Ok(())
    }

    pub(crate) fn apply_register_processor(&mut self, name: &str, v: &ProcessorVersion) {
        let p = self.processors.entry(name.to_string()).or_default();
        // The same bytes again are the version already stored.
        if p.by_sha256(&v.sha256).is_none() {
            p.versions.push(v.clone());
        }
    }

    pub(crate) fn check_delete_processor(&self, name: &str, version: Option<u32>) -> Result<()> {
        let p = self.processor(name)?;
        if let Some(v) = version
            && p.version(v).is_none()
        {
            let have: Vec<String> = p.versions.iter().map(|v| v.version.to_string()).collect();
            return Err(MetaError::Invalid(format!(
                "processor {name:?} has no version {v}; it has {}",
                have.join(", ")
            )));
        }
        if let Some(user) = self.pipelines_using(name, version).first() {
            return Err(MetaError::Invalid(format!(
                "processor {name:?} version {} is used by pipeline {:?}; delete the pipeline or apply it with another version first",
                user.processor_version, user.name
            )));
        }
        Ok(())
    }

    pub(crate) fn apply_delete_processor(&mut self, name: &str, version: Option<u32>) {
        match version {
            Some(v) => {
                if let Some(p) = self.processors.get_mut(name) {
                    p.versions.retain(|x| x.version != v);
                    if p.versions.is_empty() {
                        self.processors.remove(name);
                    }
                }
            }
            None => {
                self.processors.remove(name);
            }
        }
    }

    pub(crate) fn check_put_pipeline(&self, p: &PipelineMeta) -> Result<()> {
        validate_name("pipeline", &p.name)?;
        let processor = self.processor(&p.processor)?;
        if processor.version(p.processor_version).is_none() {
            return Err(MetaError::Invalid(format!(
                "processor {:?} has no version {}",
                p.processor, p.processor_version
            )));
        }
        for topic in p.topics() {
            self.topic(topic)?;
        }
        if let Some(out) = p.outputs.iter().find(|o| p.inputs.contains(o)) {
            return Err(MetaError::Invalid(format!(
                "pipeline {:?} reads and writes topic {out:?}; it would feed itself",
                p.name
            )));
        }
        match self.pipelines.get(&p.name) {
            Some(old) if old.id != p.id => Err(MetaError::Invalid(format!(
                "pipeline {:?} exists with another id",
                p.name
            ))),
            Some(old) if p.revision != old.revision + 1 => Err(MetaError::Invalid(format!(
                "pipeline {:?} is at revision {}; a change must bring revision {}",
                p.name,
                old.revision,
                old.revision + 1
            ))),
            None if p.revision != 1 => Err(MetaError::Invalid(format!(
                "a new pipeline starts at revision 1, not {}",
                p.revision
            ))),
            _ => Ok(()),
        }
    }

    pub(crate) fn check_pipeline_id(&self, name: &str, id: PipelineId) -> Result<()> {
        let p = self.pipeline(name)?;
        if p.id != id {
            return Err(MetaError::Invalid(format!(
                "pipeline {name:?} was deleted and applied again since; this change was for the older one"
            )));
        }
        Ok(())
    }

    /// The pipeline that reads or writes `topic`, if any.
    pub fn pipeline_using_topic(&self, topic: &str) -> Option<&PipelineMeta> {
        self.pipelines
            .values()
            .find(|p| p.topics().any(|t| t == topic))
    }
}
