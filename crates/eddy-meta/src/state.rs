//! The metadata state machine.

use std::collections::BTreeMap;
use std::fmt;

use eddy_log::LeaderEpoch;
use serde::{Deserialize, Serialize};

use crate::catalog::{PipelineId, PipelineMeta, PipelineRunState, ProcessorMeta, ProcessorVersion};
use crate::error::{MetaError, Result};
use crate::leadership::{AlterIsr, Resign};
use crate::security::{
    Acl, Quota, SCRAM_ITERATIONS_MIN, Security, TokenMeta, UserMeta, validate_user_name,
};

/// A broker's identity in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub i32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition's number within its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One incarnation of a topic: a topic deleted and created again under the
/// same name gets a new id, so stale data is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub u128);

impl TopicId {
    pub fn random() -> TopicId {
        TopicId(uuid::Uuid::new_v4().as_u128())
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        uuid::Uuid::from_u128(self.0).fmt(f)
    }
}

/// A broker as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: NodeId,
    /// Where clients reach it (host:port).
    pub address: String,
    /// Where Kafka clients reach it (host:port); `None`: no Kafka listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_address: Option<String>,
    /// Silent past its session timeout: it leads nothing and is in no ISR
    /// it could leave, until its heartbeats return.
    #[serde(default)]
    pub fenced: bool,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Replica nodes, the preferred leader first.
    pub replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub isr: Vec<NodeId>,
    /// Bumped by every change of leader or ISR; an ISR change names the
    /// one it was based on.
    #[serde(default)]
    pub partition_epoch: u32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub id: TopicId,
    /// Configs set on the topic, as given (validated by the broker).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionMeta>,
    /// Eddy's own topics (names starting with `__`).
    pub internal: bool,
}

impl TopicMeta {
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }
}

/// A change to the metadata. Commands carry every decision (ids, replica
/// placement) so that applying them is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker joined or changed its address (a broker known already
    /// stays fenced or not, as it was).
    RegisterBroker(BrokerMeta),
    /// The controller leader fences a broker that stopped heartbeating, or
    /// unfences one that came back; leaders are elected accordingly.
    SetBrokerFenced {
        id: NodeId,
        fenced: bool,
    },
    /// A partition leader grows or shrinks its ISR.
    AlterIsr(AlterIsr),
    /// A partition leader with a damaged replica hands the partition to
    /// another in-sync replica and leaves the ISR.
    Resign(Resign),
    CreateTopic(TopicMeta),
    /// Appends partitions to a topic.
    CreatePartitions {
        name: String,
        partitions: Vec<PartitionMeta>,
    },
    DeleteTopic {
        name: String,
    },
    /// Names the cluster, once: the first voter to start does it.
    InitCluster {
        cluster_id: String,
    },
    /// Reserves the next `count` plain producer ids for one broker.
    AllocateProducerIds {
        count: u32,
    },
    /// Gives the stable-name producer `name` its id (the same every time)
    /// and the next epoch.
    InitStableProducer {
        name: String,
    },
    /// Adds a processor version (bytes already stored in `__processors`).
    /// The same sha256 again under the same name changes nothing.
    RegisterProcessor {
        name: String,
        version: ProcessorVersion,
    },
    /// Removes one version of a processor, or all of them.
    DeleteProcessor {
        name: String,
        version: Option<u32>,
    },
    /// Creates or replaces a pipeline definition.
    PutPipeline(PipelineMeta),
    /// Runs, pauses or fails a pipeline.
    SetPipelineState {
        name: String,
        id: PipelineId,
        state: PipelineRunState,
    },
    DeletePipeline {
        name: String,
    },
    /// Creates a user (`create`), or gives an existing one a new credential.
    PutUser {
        user: UserMeta,
        create: bool,
    },
    /// Removes a user and revokes its tokens (its ACLs stay, as in Kafka).
    DeleteUser {
        name: String,
    },
    CreateToken(TokenMeta),
    RevokeToken {
        id: String,
    },
    /// Adds entries (one already present is not added twice).
    AddAcls(Vec<Acl>),
    /// Removes exactly these entries.
    RemoveAcls(Vec<Acl>),
    /// Sets a principal's quota (an empty one removes it).
    SetQuota {
        principal: String,
        quota: Quota,
    },
}

/// What a command gave, for the one who proposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    /// `AllocateProducerIds`: the first id of the block reserved.
    ProducerIds { first: i64 },
    /// `InitStableProducer`: the name's id and its new epoch.
    StableProducer { id: i64, epoch: i16 },
}

/// Everything the cluster knows about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub cluster_id: String,
    pub brokers: BTreeMap<NodeId, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Number of commands applied.
    pub version: u64,
    /// The next plain producer id to hand out.
    pub next_producer_id: i64,
    /// Stable-name producers: name → (id, current epoch).
    pub stable_producers: BTreeMap<String, (i64, i16)>,
    /// The next stable producer id.
    pub next_stable_producer_id: i64,
    /// Uploaded processors by name.
    pub processors: BTreeMap<String, ProcessorMeta>,
    /// Pipeline definitions by name.
    pub pipelines: BTreeMap<String, PipelineMeta>,
    /// Users, tokens and ACLs.
    #[serde(default)]
    pub security: Security,
}

impl MetaState {
    pub fn topic(&self, name: &str) -> Result<&TopicMeta> {
        self.topics
            .get(name)
            .ok_or_else(|| MetaError::UnknownTopic(name.to_string()))
    }

    /// Whether `cmd` may be applied to this state.
    pub fn check(&self, cmd: &Command) -> Result<()> {
        match cmd {
            Command::RegisterBroker(b) => {
                if b.address.is_empty() {
                    return Err(MetaError::Invalid(format!(
                        "broker {} has no address",
                        b.id
                    )));
                }
            }
            Command::SetBrokerFenced { id, .. } => self.check_set_fenced(*id)?,
            Command::AlterIsr(a) => self.check_alter_isr(a)?,
            Command::Resign(r) => self.check_resign(r)?,
            Command::CreateTopic(t) => {
                validate_topic_name(&t.name, t.internal)?;
                if self.topics.contains_key(&t.name) {
                    return Err(MetaError::TopicExists(t.name.clone()));
                }
                self.check_partitions(&t.partitions)?;
                if t.partitions.is_empty() {
                    return Err(MetaError::Invalid(
                        "a topic needs at least one partition".into(),
                    ));
                }
            }
            Command::CreatePartitions { name, partitions } => {
                self.topic(name)?;
                self.check_partitions(partitions)?;
            }
            Command::DeleteTopic { name } => {
                self.topic(name)?;
                if let Some(p) = self.pipeline_using_topic(name) {
                    return Err(MetaError::Invalid(format!(
                        "topic {name:?} is used by pipeline {:?}; delete the pipeline first (`eddy pipeline delete {}`)",
                        p.name, p.name
                    )));
                }
            }
            Command::InitCluster { cluster_id } => {
                if !self.cluster_id.is_empty() {
                    return Err(MetaError::Invalid(format!(
                        "the cluster is named {:?} already",
                        self.cluster_id
                    )));
                }
                if cluster_id.is_empty() {
                    return Err(MetaError::Invalid("a cluster id cannot be empty".into()));
                }
            }
            Command::AllocateProducerIds { count } => {
                if *count == 0 || *count > 1_000_000 {
                    return Err(MetaError::Invalid(format!(
                        "cannot reserve {count} producer ids"
                    )));
                }
            }
            Command::InitStableProducer { name } => {
                if name.is_empty() || name.len() > 1024 {
                    return Err(MetaError::Invalid(
                        "a stable producer name has 1 to 1024 characters".into(),
                    ));
                }
            }
            Command::RegisterProcessor { name, version } => {
                self.check_register_processor(name, version)?;
            }
            Command::DeleteProcessor { name, version } => {
                self.check_delete_processor(name, *version)?;
            }
            Command::PutPipeline(p) => self.check_put_pipeline(p)?,
            Command::SetPipelineState { name, id, .. } => self.check_pipeline_id(name, *id)?,
            Command::DeletePipeline { name } => {
                self.pipeline(name)?;
            }
            Command::PutUser { user, create } => self.check_put_user(user, *create)?,
            Command::DeleteUser { name } => {
                self.user(name)?;
            }
            Command::CreateToken(t) => {
                self.user(&t.user)?;
                if t.id.is_empty() || self.security.tokens.contains_key(&t.id) {
                    return Err(MetaError::Invalid(format!("token id {:?} is taken", t.id)));
                }
            }
            Command::RevokeToken { id } => {
                if !self.security.tokens.contains_key(id) {
                    return Err(MetaError::NotFound(format!("no token {id:?}")));
                }
            }
            Command::AddAcls(acls) => {
                for acl in acls {
                    acl.check()?;
                }
            }
            Command::SetQuota { principal, .. } => {
                let valid = principal
                    .strip_prefix("User:")
                    .is_some_and(|name| !name.is_empty());
                if !valid {
                    return Err(MetaError::Invalid(format!(
                        "quota principal {principal:?}: give User:NAME, or User:* for the default"
                    )));
                }
            }
            Command::RemoveAcls(acls) => {
                if let Some(missing) = acls.iter().find(|a| !self.security.acls.0.contains(a)) {
                    return Err(MetaError::NotFound(format!("no such ACL: {missing:?}")));
                }
            }
        }
        Ok(())
    }

    pub fn user(&self, name: &str) -> Result<&UserMeta> {
        self.security.users.get(name).ok_or_else(|| {
            MetaError::NotFound(format!("no user {name:?} (`eddy user list` shows them)"))
        })
    }

    fn check_put_user(&self, user: &UserMeta, create: bool) -> Result<()> {
        validate_user_name(&user.name)?;
        if user.credential.iterations < SCRAM_ITERATIONS_MIN || user.credential.salt.len() < 16 {
            return Err(MetaError::Invalid(format!(
                "a credential needs at least {SCRAM_ITERATIONS_MIN} iterations and 16 bytes of salt"
            )));
        }
        let exists = self.security.users.contains_key(&user.name);
        if create && exists {
            return Err(MetaError::Invalid(format!(
                "user {:?} exists already; change its password with `eddy user passwd {}`",
                user.name, user.name
            )));
        }
        if !create && !exists {
            self.user(&user.name)?;
        }
        Ok(())
    }

    fn check_partitions(&self, partitions: &[PartitionMeta]) -> Result<()> {
        for p in partitions {
            if p.replicas.is_empty() {
                return Err(MetaError::Invalid(
                    "a partition needs at least one replica".into(),
                ));
            }
            if let Some(missing) = p.replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return Err(MetaError::Invalid(format!(
                    "replica on unknown broker {missing}"
                )));
            }
        }
        Ok(())
    }

    /// What `cmd`, just applied, gave.
    pub fn output_of(&self, cmd: &Command) -> Option<Output> {
        match cmd {
            Command::AllocateProducerIds { count } => Some(Output::ProducerIds {
                first: self.next_producer_id - i64::from(*count),
            }),
            Command::InitStableProducer { name } => self
                .stable_producers
                .get(name)
                .map(|&(id, epoch)| Output::StableProducer { id, epoch }),
            _ => None,
        }
    }

    /// Applies a command that passed [`MetaState::check`].
    pub fn apply(&mut self, cmd: &Command) {
        match cmd {
            Command::RegisterBroker(b) => {
                let fenced = self.brokers.get(&b.id).is_some_and(|old| old.fenced);
                self.brokers.insert(
                    b.id,
                    BrokerMeta {
                        fenced,
                        ..b.clone()
                    },
                );
            }
            Command::SetBrokerFenced { id, fenced } => self.apply_set_fenced(*id, *fenced),
            Command::AlterIsr(a) => self.apply_alter_isr(a),
            Command::Resign(r) => self.apply_resign(r),
            Command::CreateTopic(t) => {
                self.topics.insert(t.name.clone(), t.clone());
            }
            Command::CreatePartitions { name, partitions } => {
                if let Some(t) = self.topics.get_mut(name) {
                    t.partitions.extend(partitions.iter().cloned());
                }
            }
            Command::DeleteTopic { name } => {
                self.topics.remove(name);
            }
            Command::InitCluster { cluster_id } => {
                self.cluster_id = cluster_id.clone();
            }
            Command::AllocateProducerIds { count } => {
                self.next_producer_id += i64::from(*count);
            }
            Command::InitStableProducer { name } => {
                let next_id = eddy_log::STABLE_PRODUCER_ID_BASE + self.next_stable_producer_id;
                match self.stable_producers.get_mut(name) {
                    // At the last epoch the name gets a fresh id (epoch 0).
                    Some((_, epoch)) if *epoch < i16::MAX => *epoch += 1,
                    _ => {
                        self.stable_producers.insert(name.clone(), (next_id, 0));
                        self.next_stable_producer_id += 1;
                    }
                }
            }
            Command::RegisterProcessor { name, version } => {
                self.apply_register_processor(name, version);
            }
            Command::DeleteProcessor { name, version } => {
                self.apply_delete_processor(name, *version);
            }
            Command::PutPipeline(p) => {
                self.pipelines.insert(p.name.clone(), p.clone());
            }
            Command::SetPipelineState { name, state, .. } => {
                if let Some(p) = self.pipelines.get_mut(name) {
                    p.state = state.clone();
                }
            }
            Command::DeletePipeline { name } => {
                self.pipelines.remove(name);
            }
            Command::PutUser { user, .. } => {
                self.security.users.insert(user.name.clone(), user.clone());
            }
            Command::DeleteUser { name } => {
                self.security.users.remove(name);
                self.security.tokens.retain(|_, t| &t.user != name);
            }
            Command::CreateToken(t) => {
                self.security.tokens.insert(t.id.clone(), t.clone());
            }
            Command::RevokeToken { id } => {
                self.security.tokens.remove(id);
            }
            Command::AddAcls(acls) => {
                for acl in acls {
                    if !self.security.acls.0.contains(acl) {
                        self.security.acls.0.push(acl.clone());
                    }
                }
            }
            Command::RemoveAcls(acls) => self.security.acls.0.retain(|a| !acls.contains(a)),
            Command::SetQuota { principal, quota } => {
                if quota.is_empty() {
                    self.security.quotas.remove(principal);
                } else {
                    self.security.quotas.insert(principal.clone(), *quota);
                }
            }
        }
        self.version += 1;
    }
}

/// Longest topic name (as in Kafka, so names fit in file names with a suffix).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Topic names: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`;
/// names starting with `__` are reserved for internal topics.
pub fn validate_topic_name(name: &str, internal: bool) -> Result<()> {
    let bad = |reason: &str| MetaError::InvalidTopicName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > TOPIC_NAME_LEN_MAX {
        return Err(bad("use 1 to 249 characters"));
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
    if name.starts_with("__") && !internal {
        return Err(bad(
            "names starting with \"__\" are reserved for Eddy's internal topics",
        ));
    }
    Ok(())
}

/// Places `count` partitions' replicas round-robin over `brokers`, the
/// first partition's leader being `brokers[first % brokers.len()]`, so
/// leaders spread evenly. Fails when there are fewer brokers than
/// `replication_factor`.
pub fn assign_replicas(
    brokers: &[NodeId],
    first: u32,
    count: u32,
    replication_factor: usize,
) -> Result<Vec<PartitionMeta>> {
    if replication_factor == 0 {
        return Err(MetaError::Invalid(
            "replication factor must be at least 1".into(),
        ));
    }
    if brokers.len() < replication_factor {
        return Err(MetaError::Invalid(format!(
            "replication factor {replication_factor} needs at least {replication_factor} live brokers, the cluster has {} (`eddy cluster describe` lists them)",
            brokers.len()
        )));
    }
    Ok((first..first + count)
        .map(|p| {
            let replicas: Vec<NodeId> = (0..replication_factor)
                .map(|r| brokers[(p as usize + r) % brokers.len()])
                .collect();
            PartitionMeta {
                leader: replicas.first().copied(),
                leader_epoch: LeaderEpoch(0),
                isr: replicas.clone(),
                replicas,
                partition_epoch: 0,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["orders", "a.b_c-D9", &"x".repeat(249)] {
            validate_topic_name(ok, false).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "ü",
            "a/b",
            &"x".repeat(250),
            "__offsets",
        ] {
            assert!(validate_topic_name(bad, false).is_err(), "{bad:?}");
        }
        validate_topic_name("__consumer_offsets", true).unwrap();
    }

    #[test]
    fn replicas_spread_round_robin_and_need_enough_brokers() {
        let brokers = [NodeId(1), NodeId(2), NodeId(3)];
        let parts = assign_replicas(&brokers, 0, 3, 2).unwrap();
        let leaders: Vec<_> = parts.iter().map(|p| p.leader.unwrap().0).collect();
        assert_eq!(leaders, [1, 2, 3]);
        assert_eq!(parts[2].replicas, [NodeId(3), NodeId(1)]);
        let err = assign_replicas(&brokers, 0, 1, 4).unwrap_err().to_string();
        assert!(
            err.contains("needs at least 4 live brokers, the cluster has 3"),
            "{err}"
        );
    }
}
