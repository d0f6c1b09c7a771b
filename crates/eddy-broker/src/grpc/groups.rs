//! Consumer groups over gRPC.

use eddy_meta::{Operation, ResourceType};
use eddy_proto::v1 as pb;
use eddy_proto::v1::groups_server::Groups;
use tonic::{Request, Response, Status};

use super::Service;
use super::convert;
use crate::auth::Caller;

#[tonic::async_trait]
impl Groups for Service {
    async fn join_group(
        &self,
        req: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        let host = req
            .remote_addr()
            .map_or_else(String::new, |a| a.ip().to_string());
        let joined = self
            .broker
            .join_group(convert::join_request(req.into_inner(), host)?)
            .await?;
        Ok(Response::new(convert::join_response(joined)))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker
            .heartbeat(convert::heartbeat_request(req.into_inner()))
            .await?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn leave_group(
        &self,
        req: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker
            .leave_group(convert::leave_request(req.into_inner()))
            .await?;
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        req: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check([req.get_ref().group_id.as_str()])?;
        for o in &req.get_ref().offsets {
            caller.check_op(ResourceType::Topic, &o.topic, Operation::Read)?;
        }
        self.broker
            .commit_offsets(convert::commit_request(req.into_inner()))
            .await?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        req: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check([req.get_ref().group_id.as_str()])?;
        for t in &req.get_ref().partitions {
            caller.check_op(ResourceType::Topic, &t.topic, Operation::Describe)?;
        }
        let req = req.into_inner();
        let group = req.group_id.clone();
        let partitions = convert::fetch_offsets_partitions(req);
        let offsets = self.broker.fetch_offsets(&group, &partitions).await?;
        Ok(Response::new(convert::fetch_offsets_response(offsets)))
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let groups = self
            .broker
            .list_groups()
            .await?
            .into_iter()
            .filter(|g| caller.may(ResourceType::Group, &g.group_id, Operation::Describe))
            .map(convert::group_summary)
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        let group = self
            .broker
            .describe_group(&req.into_inner().group_id)
            .await?;
        Ok(Response::new(convert::group_description(group)))
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker.delete_group(&req.into_inner().group_id).await?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }
}
