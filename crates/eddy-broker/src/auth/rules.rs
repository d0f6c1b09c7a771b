//! The one table of every RPC the broker serves and the right it needs.
//! A call to a method not in the table is refused when authentication is
//! required, and a test enumerates every method of every service
//! (`tests/suite/security/rpcs.rs`) and proves each is refused without
//! its right, so no RPC ships unchecked.

use eddy_meta::{Operation, ResourceType};

use Operation::*;
use ResourceType::{Group, Pipeline, Processor, Topic};
use Rule::*;

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing, not even credentials: health checks.
    Open,
    /// Any authenticated principal.
    Authenticated,
    /// Only a broker of this cluster (its cluster secret): Raft, replica
    /// fetches.
    Brokers,
    /// An operation on the cluster resource.
    OnCluster(Operation),
    /// The operation on every resource of this type the request names
    /// (the handler names them to [`super::Caller::check`]).
    Named(ResourceType, Operation),
    /// The operation on at least one resource of this type (a producer id
    /// is for writing some topic).
    AnyOf(ResourceType, Operation),
    /// A list: answered with only the resources the caller may describe.
    Listed(ResourceType),
    /// About a user: that user itself, or this operation on the cluster.
    SelfOr(Operation),
}

/// Every RPC, by its gRPC path.
pub const RULES: &[(&str, Rule)] = &[
    ("/grpc.health.v1.Health/Check", Open),
    ("/grpc.health.v1.Health/Watch", Open),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Authenticated,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Authenticated,
    ),
    ("/eddy.v1.Cluster/Metadata", Listed(Topic)),
    ("/eddy.v1.Admin/CreateTopic", Named(Topic, Create)),
    ("/eddy.v1.Admin/ListTopics", Listed(Topic)),
    ("/eddy.v1.Admin/DescribeTopic", Named(Topic, Describe)),
    ("/eddy.v1.Admin/CreatePartitions", Named(Topic, Alter)),
    ("/eddy.v1.Admin/DeleteTopic", Named(Topic, Delete)),
    ("/eddy.v1.Produce/Produce", Named(Topic, Write)),
    ("/eddy.v1.Produce/ProduceStream", Named(Topic, Write)),
    ("/eddy.v1.Produce/InitProducerId", AnyOf(Topic, Write)),
    ("/eddy.v1.Produce/DescribeProducer", Named(Topic, Describe)),
    ("/eddy.v1.Consume/Fetch", Named(Topic, Read)),
    ("/eddy.v1.Consume/Subscribe", Named(Topic, Read)),
    ("/eddy.v1.Consume/ListOffsets", Named(Topic, Describe)),
    ("/eddy.v1.Groups/JoinGroup", Named(Group, Read)),
    ("/eddy.v1.Groups/Heartbeat", Named(Group, Read)),
    ("/eddy.v1.Groups/LeaveGroup", Named(Group, Read)),
    // And read on each topic committed.
    ("/eddy.v1.Groups/CommitOffsets", Named(Group, Read)),
    // And describe on each topic asked about.
    ("/eddy.v1.Groups/FetchOffsets", Named(Group, Describe)),
    ("/eddy.v1.Groups/ListGroups", Listed(Group)),
    ("/eddy.v1.Groups/DescribeGroup", Named(Group, Describe)),
    ("/eddy.v1.Groups/DeleteGroup", Named(Group, Delete)),
    ("/eddy.v1.Processors/Upload", Named(Processor, Upload)),
    ("/eddy.v1.Processors/List", Listed(Processor)),
    ("/eddy.v1.Processors/Describe", Named(Processor, Describe)),
    ("/eddy.v1.Processors/Delete", Named(Processor, Delete)),
    ("/eddy.v1.Processors/Download", Named(Processor, Read)),
    // And, for the owner the pipeline runs as, read on its inputs and
    // processor, write on its outputs.
    ("/eddy.v1.Pipelines/Apply", Named(Pipeline, Apply)),
    ("/eddy.v1.Pipelines/List", Listed(Pipeline)),
    ("/eddy.v1.Pipelines/Describe", Named(Pipeline, Describe)),
    ("/eddy.v1.Pipelines/Get", Named(Pipeline, Describe)),
    ("/eddy.v1.Pipelines/Pause", Named(Pipeline, Alter)),
    ("/eddy.v1.Pipelines/Resume", Named(Pipeline, Alter)),
    ("/eddy.v1.Pipelines/Delete", Named(Pipeline, Delete)),
    // What pipeline workers do.
    ("/eddy.v1.Pipelines/Watch", OnCluster(ClusterAction)),
    ("/eddy.v1.Pipelines/Report", OnCluster(ClusterAction)),
    ("/eddy.v1.Pipelines/Fail", OnCluster(ClusterAction)),
    ("/eddy.v1.Controller/AppendEntries", Brokers),
    ("/eddy.v1.Controller/Vote", Brokers),
    ("/eddy.v1.Controller/InstallSnapshot", Brokers),
    ("/eddy.v1.Controller/Propose", Brokers),
    ("/eddy.v1.Controller/ReadIndex", Brokers),
    ("/eddy.v1.Controller/BrokerHeartbeat", Brokers),
    ("/eddy.v1.Replication/Fetch", Brokers),
    ("/eddy.v1.Security/CreateUser", OnCluster(Alter)),
    ("/eddy.v1.Security/ChangePassword", SelfOr(Alter)),
    ("/eddy.v1.Security/DeleteUser", OnCluster(Alter)),
    ("/eddy.v1.Security/ListUsers", OnCluster(Describe)),
    ("/eddy.v1.Security/CreateToken", SelfOr(Alter)),
    ("/eddy.v1.Security/ListTokens", SelfOr(Describe)),
    ("/eddy.v1.Security/RevokeToken", SelfOr(Alter)),
    ("/eddy.v1.Security/AddAcls", OnCluster(Alter)),
    ("/eddy.v1.Security/RemoveAcls", OnCluster(Alter)),
    ("/eddy.v1.Security/ListAcls", OnCluster(Describe)),
    ("/eddy.v1.Security/WhoAmI", Authenticated),
    ("/eddy.v1.Security/SetQuota", OnCluster(Alter)),
    ("/eddy.v1.Security/ListQuotas", OnCluster(Describe)),
];

/// The rule of the RPC at `path`, if it has one.
pub fn for_path(path: &str) -> Option<Rule> {
    RULES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every method of every service in Eddy's protos, by gRPC path.
    fn eddy_rpcs() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(eddy_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn every_eddy_rpc_has_exactly_one_rule() {
        let rpcs = eddy_rpcs();
        assert!(rpcs.len() > 40, "found only {} RPCs", rpcs.len());
        let wrong: Vec<String> = rpcs
            .iter()
            .filter_map(|path| {
                let n = RULES.iter().filter(|(p, _)| p == path).count();
                (n != 1).then(|| format!("{path}: {n} rules"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
