//! The `Security` gRPC service: users, API tokens and ACLs, each change a
//! metadata command, each logged to the audit log with who made it.

use std::sync::Arc;

use base64::Engine;
use eddy_meta::{
    Acl, CLUSTER_RESOURCE, Command, Operation, Quota, ResourceType, TokenMeta, UserMeta,
    validate_user_name,
};
use eddy_proto::v1 as pb;
use eddy_proto::v1::security_server::Security;
use tonic::{Request, Response, Status};

use super::authenticate::{TOKEN_PREFIX, now_ms, split_token, token_hash};
use super::{Caller, Principal, denied, scram};
use crate::broker::Broker;
use crate::error::BrokerError;

/// Random bytes in a token's id and in its secret.
const TOKEN_ID_BYTES: usize = 8;
const TOKEN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone)]
pub struct SecurityService {
    broker: Arc<Broker>,
}

impl SecurityService {
    pub fn new(broker: Arc<Broker>) -> SecurityService {
        SecurityService { broker }
    }

    async fn propose(&self, command: Command) -> Result<(), Status> {
        self.broker
            .meta
            .propose(command)
            .await
            .map_err(|e| BrokerError::from(e).to_status())?;
        Ok(())
    }

    /// Adds or removes the request's ACLs, logging each.
    async fn change_acls(
        &self,
        req: Request<pb::AclsRequest>,
        command: fn(Vec<Acl>) -> Command,
        what: &str,
    ) -> Result<Response<pb::AclsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let acls = req
            .into_inner()
            .acls
            .iter()
            .map(acl_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        if acls.is_empty() {
            return Err(Status::invalid_argument("no ACL given"));
        }
        self.propose(command(acls.clone())).await?;
        for a in &acls {
            audit(&caller, what, &format!("{a:?}"));
        }
        Ok(Response::new(pb::AclsResponse {
            acls: acls.iter().map(acl_to_pb).collect(),
        }))
    }

    async fn put_user(
        &self,
        name: &str,
        password: String,
        create: bool,
    ) -> Result<UserMeta, Status> {
        validate_user_name(name).map_err(|e| BrokerError::from(e).to_status())?;
        let credential = tokio::task::spawn_blocking(move || scram::credential(&password))
            .await
            .map_err(|e| Status::internal(format!("deriving the credential failed: {e}")))?
            .map_err(Status::invalid_argument)?;
        let created_ms = match self.broker.meta.state().security.users.get(name) {
            Some(old) if !create => old.created_ms,
            _ => now_ms(),
        };
        let user = UserMeta {
            name: name.to_string(),
            credential,
            created_ms,
        };
        self.propose(Command::PutUser {
            user: user.clone(),
            create,
        })
        .await?;
        Ok(user)
    }
}

fn summary(u: &UserMeta) -> pb::UserSummary {
    pb::UserSummary {
        name: u.name.clone(),
        created_ms: u.created_ms,
        iterations: u.credential.iterations,
    }
}

fn token_summary(t: &TokenMeta) -> pb::TokenSummary {
    pb::TokenSummary {
        id: t.id.clone(),
        user: t.user.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms.unwrap_or(0),
    }
}

/// The refusal of a cluster-wide operation.
fn cluster_denied(caller: &Caller, operation: Operation) -> Status {
    denied(
        &caller.principal,
        ResourceType::Cluster,
        CLUSTER_RESOURCE,
        operation,
    )
}

fn audit(caller: &Caller, what: &str, subject: &str) {
    tracing::info!(target: "eddy::audit", principal = %caller.principal, peer = ?caller.peer, subject, "{what}");
}

fn random(n: usize) -> Result<Vec<u8>, Status> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| Status::internal(format!("no randomness: {e}")))?;
    Ok(bytes)
}

/// An ACL from the wire, with defaults filled in (literal, allow).
pub fn acl_from_pb(e: &pb::AclEntry) -> Result<Acl, Status> {
    let parse = |what: &str, value: &str, default: &str| -> Result<String, Status> {
        let v = if value.is_empty() { default } else { value };
        if v.is_empty() {
            return Err(Status::invalid_argument(format!("an ACL needs a {what}")));
        }
        Ok(v.to_string())
    };
    let bad = |e: String| Status::invalid_argument(e);
    let resource: ResourceType = parse("resource type", &e.resource_type, "")?
        .parse()
        .map_err(bad)?;
    let name = if resource == ResourceType::Cluster {
        CLUSTER_RESOURCE.to_string()
    } else {
        parse("resource name", &e.name, "")?
    };
    let acl = Acl {
        principal: parse("principal", &e.principal, "")?,
        resource,
        pattern: parse("pattern", &e.pattern, "literal")?
            .parse()
            .map_err(bad)?,
        name,
        operation: parse("operation", &e.operation, "")?.parse().map_err(bad)?,
        permission: parse("permission", &e.permission, "allow")?
            .parse()
            .map_err(bad)?,
    };
    acl.check().map_err(|e| BrokerError::from(e).to_status())?;
    Ok(acl)
}

pub fn acl_to_pb(a: &Acl) -> pb::AclEntry {
    pb::AclEntry {
        principal: a.principal.clone(),
        resource_type: a.resource.to_string(),
        name: a.name.clone(),
        pattern: a.pattern.to_string(),
        operation: a.operation.to_string(),
        permission: a.permission.to_string(),
    }
}

#[tonic::async_trait]
impl Security for SecurityService {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::UserSummary>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        let user = self.put_user(&req.name, req.password, true).await?;
        audit(&caller, "user created", &user.name);
        Ok(Response::new(summary(&user)))
    }

    async fn change_password(
        &self,
        req: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::UserSummary>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        if !caller.is_or_may(&req.name, Operation::Alter) {
            return Err(cluster_denied(&caller, Operation::Alter));
        }
        let user = self.put_user(&req.name, req.password, false).await?;
        audit(&caller, "password changed", &user.name);
        Ok(Response::new(summary(&user)))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let caller = Caller::of(&req)?;
        let name = req.into_inner().name;
        let tokens = self
            .broker
            .meta
            .state()
            .security
            .tokens
            .values()
            .filter(|t| t.user == name)
            .count();
        self.propose(Command::DeleteUser { name: name.clone() })
            .await?;
        audit(&caller, "user deleted", &name);
        Ok(Response::new(pb::DeleteUserResponse {
            tokens_revoked: tokens as u32,
        }))
    }

    async fn list_users(
        &self,
        _req: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let state = self.broker.meta.state();
        Ok(Response::new(pb::ListUsersResponse {
            users: state.security.users.values().map(summary).collect(),
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        if !caller.is_or_may(&req.user, Operation::Alter) {
            return Err(cluster_denied(&caller, Operation::Alter));
        }
        let id: String = random(TOKEN_ID_BYTES)?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(TOKEN_SECRET_BYTES)?);
        let created_ms = now_ms();
        let token = TokenMeta {
            id: id.clone(),
            user: req.user.clone(),
            hash: token_hash(&secret),
            created_ms,
            expires_ms: (req.expires_in_ms > 0)
                .then(|| created_ms.saturating_add(req.expires_in_ms)),
        };
        self.propose(Command::CreateToken(token.clone())).await?;
        audit(&caller, "token created", &format!("{id} for {}", req.user));
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_summary(&token)),
            secret: format!("{TOKEN_PREFIX}{id}_{secret}"),
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = Caller::of(&req)?;
        let user = req.into_inner().user;
        let all = caller.may(ResourceType::Cluster, CLUSTER_RESOURCE, Operation::Describe);
        let me = match &caller.principal {
            Principal::User(me) => Some(me.clone()),
            _ => None,
        };
        if !all && !user.is_empty() && me.as_deref() != Some(user.as_str()) {
            return Err(cluster_denied(&caller, Operation::Describe));
        }
        let state = self.broker.meta.state();
        let tokens = state
            .security
            .tokens
            .values()
            .filter(|t| user.is_empty() || t.user == user)
            .filter(|t| all || me.as_deref() == Some(t.user.as_str()))
            .map(token_summary)
            .collect();
        Ok(Response::new(pb::ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = Caller::of(&req)?;
        let given = req.into_inner().id;
        let id = split_token(given.trim())
            .map_or(given.trim(), |(id, _)| id)
            .to_string();
        let owner = self
            .broker
            .meta
            .state()
            .security
            .tokens
            .get(&id)
            .map(|t| t.user.clone());
        // Whether a token exists is told only to whoever may revoke it.
        if !owner
            .as_ref()
            .is_some_and(|o| caller.is_or_may(o, Operation::Alter))
            && !caller.may(ResourceType::Cluster, CLUSTER_RESOURCE, Operation::Alter)
        {
            return Err(cluster_denied(&caller, Operation::Alter));
        }
        self.propose(Command::RevokeToken { id: id.clone() })
            .await?;
        audit(&caller, "token revoked", &id);
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn add_acls(
        &self,
        req: Request<pb::AclsRequest>,
    ) -> Result<Response<pb::AclsResponse>, Status> {
        self.change_acls(req, Command::AddAcls, "ACL added").await
    }

    async fn remove_acls(
        &self,
        req: Request<pb::AclsRequest>,
    ) -> Result<Response<pb::AclsResponse>, Status> {
        self.change_acls(req, Command::RemoveAcls, "ACL removed")
            .await
    }

    async fn list_acls(
        &self,
        req: Request<pb::ListAclsRequest>,
    ) -> Result<Response<pb::AclsResponse>, Status> {
        let req = req.into_inner();
        let resource: Option<ResourceType> = if req.resource_type.is_empty() {
            None
        } else {
            Some(
                req.resource_type
                    .parse()
                    .map_err(Status::invalid_argument)?,
            )
        };
        let state = self.broker.meta.state();
        let acls = state
            .security
            .acls
            .0
            .iter()
            .filter(|a| req.principal.is_empty() || a.principal == req.principal)
            .filter(|a| resource.is_none_or(|r| a.resource == r))
            .map(acl_to_pb)
            .collect();
        Ok(Response::new(pb::AclsResponse { acls }))
    }

    async fn set_quota(
        &self,
        req: Request<pb::QuotaEntry>,
    ) -> Result<Response<pb::QuotaEntry>, Status> {
        let caller = Caller::of(&req)?;
        let entry = req.into_inner();
        let nonzero64 = |v: u64| (v > 0).then_some(v);
        let nonzero32 = |v: u32| (v > 0).then_some(v);
        let quota = Quota {
            produce_bytes_per_sec: nonzero64(entry.produce_bytes_per_sec),
            fetch_bytes_per_sec: nonzero64(entry.fetch_bytes_per_sec),
            connections: nonzero32(entry.connections),
            uploads_per_hour: nonzero32(entry.uploads_per_hour),
        };
        self.propose(Command::SetQuota {
            principal: entry.principal.clone(),
            quota,
        })
        .await?;
        audit(
            &caller,
            "quota set",
            &format!("{}: {quota:?}", entry.principal),
        );
        Ok(Response::new(entry))
    }

    async fn list_quotas(
        &self,
        _req: Request<pb::ListQuotasRequest>,
    ) -> Result<Response<pb::ListQuotasResponse>, Status> {
        let state = self.broker.meta.state();
        let quotas = state
            .security
            .quotas
            .iter()
            .map(|(principal, q)| pb::QuotaEntry {
                principal: principal.clone(),
                produce_bytes_per_sec: q.produce_bytes_per_sec.unwrap_or(0),
                fetch_bytes_per_sec: q.fetch_bytes_per_sec.unwrap_or(0),
                connections: q.connections.unwrap_or(0),
                uploads_per_hour: q.uploads_per_hour.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(pb::ListQuotasResponse { quotas }))
    }

    async fn who_am_i(
        &self,
        req: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = Caller::of(&req)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: caller.principal.to_string(),
            auth_required: caller.authorizer().config().required,
            super_user: caller.authorizer().is_super_user(&caller.principal),
        }))
    }
}
