//! Who is asking, and may they: one module every listener calls.
//!
//! - [`Authorizer::authenticate`] turns a call's `authorization` metadata
//!   into a [`Principal`]: a user's password (checked against its
//!   SCRAM-SHA-256 credential, with verified passwords cached), an API
//!   token (checked against its hash), or a broker's cluster secret.
//! - `rules.rs` is the one table of every RPC and what it needs; the
//!   [`layer`] in front of every service authenticates each call, checks
//!   what the table lets it check without the request body, and hands the
//!   handler a [`Caller`] to check the named resources with.
//! - `service.rs` is the `Security` service: users, tokens, ACLs.
//!
//! Without `--auth required` calls without credentials are served as
//! `User:ANONYMOUS` and nothing is denied; credentials that are given are
//! still checked.

mod authenticate;
pub(crate) mod layer;
pub(crate) mod quota;
pub mod rules;
pub(crate) mod scram;
pub(crate) mod service;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use eddy_meta::{CLUSTER_RESOURCE, Operation, ResourceType};
use tonic::{Request, Status};

pub use authenticate::Authorizer;
pub use quota::Rate;
pub use rules::Rule;
pub use scram::Exchange as ScramExchange;

/// Authentication and authorization settings of a broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Every call must carry valid credentials and is checked against the
    /// ACLs (`--auth required`).
    pub required: bool,
    /// Principals (`User:NAME`) allowed everything.
    pub super_users: BTreeSet<String>,
    /// The secret the brokers of a cluster share to prove they are brokers.
    pub cluster_secret: Option<Secret>,
}

/// A secret that never shows in logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// Who a call comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// No credentials (served only without `--auth required`).
    Anonymous,
    User(String),
    /// A broker of this cluster, proven by the cluster secret.
    Broker(i32),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("User:ANONYMOUS"),
            Principal::User(name) => write!(f, "User:{name}"),
            Principal::Broker(id) => write!(f, "Broker:{id}"),
        }
    }
}

/// The caller of one call, as the handler sees it: who, under which rule.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub rule: Rule,
    /// Where the call came from, for the audit log.
    pub peer: Option<std::net::SocketAddr>,
    authorizer: Arc<Authorizer>,
}

impl Caller {
    /// The caller of `request`: every call through the broker's server
    /// has one; a call without is refused.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        Caller::from_extensions(request.extensions().get::<Caller>())
    }

    /// The caller of a request the broker reads itself (not through tonic).
    pub fn of_http<B>(request: &http::Request<B>) -> Result<Caller, Status> {
        Caller::from_extensions(request.extensions().get::<Caller>())
    }

    fn from_extensions(caller: Option<&Caller>) -> Result<Caller, Status> {
        caller
            .cloned()
            .ok_or_else(|| Status::internal("the call was not authenticated (no caller)"))
    }

    /// Checks the call's rule on each resource it names: a
    /// [`Rule::Named`] call needs its operation on every name, and one that
    /// names none needs it on every resource of the type (`*`).
    pub fn check<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), Status> {
        match self.rule {
            Rule::Named(resource, operation) => {
                let mut named = false;
                for name in names {
                    named = true;
                    self.check_op(resource, name, operation)?;
                }
                if !named {
                    self.check_op(resource, "*", operation)?;
                }
                Ok(())
            }
            // Checked in full by the layer.
            _ => Ok(()),
        }
    }

    /// Checks one operation on one resource, beyond the call's rule (a
    /// commit also reads its topics, say).
    pub fn check_op(
        &self,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> Result<(), Status> {
        if self.may(resource, name, operation) {
            return Ok(());
        }
        tracing::warn!(
            target: "eddy::audit",
            principal = %self.principal,
            peer = ?self.peer,
            resource = %resource,
            name,
            operation = %operation,
            "denied"
        );
        Err(denied(&self.principal, resource, name, operation))
    }

    /// Checks that the caller may do `operation` on at least one resource
    /// of this type, before the request says which (an upload names its
    /// processor only at its end).
    pub fn check_some(&self, resource: ResourceType, operation: Operation) -> Result<(), Status> {
        if self
            .authorizer
            .allows_some(&self.principal, resource, operation)
        {
            return Ok(());
        }
        tracing::warn!(target: "eddy::audit", principal = %self.principal, peer = ?self.peer, resource = %resource, operation = %operation, "denied");
        Err(denied(&self.principal, resource, "*", operation))
    }

    /// Whether the caller may do `operation` on the resource (lists show
    /// only what this allows describing).
    pub fn may(&self, resource: ResourceType, name: &str, operation: Operation) -> bool {
        self.authorizer
            .allows(&self.principal, resource, name, operation)
    }

    /// Whether the caller may act on the cluster as a whole with
    /// `operation`, or is the user `user` acting on itself.
    pub fn is_or_may(&self, user: &str, operation: Operation) -> bool {
        matches!(&self.principal, Principal::User(me) if me == user)
            || self.may(ResourceType::Cluster, CLUSTER_RESOURCE, operation)
    }

    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// Records `bytes` of produce or fetch by the caller and returns how
    /// long its answer waits to keep to its quota (zero for brokers and
    /// principals within theirs).
    pub fn throttle(&self, rate: Rate, bytes: u64) -> std::time::Duration {
        self.authorizer.throttle(&self.principal, rate, bytes)
    }

    /// Whether the caller has a rate quota of this kind.
    pub fn has_quota(&self, rate: Rate) -> bool {
        if matches!(self.principal, Principal::Broker(_)) {
            return false;
        }
        self.authorizer
            .quota_of(&self.principal.to_string())
            .is_some_and(|q| match rate {
                Rate::Produce => q.produce_bytes_per_sec.is_some(),
                Rate::Fetch => q.fetch_bytes_per_sec.is_some(),
            })
    }

    /// Counts a processor upload against the caller's hourly quota.
    pub fn charge_upload(&self) -> Result<(), Status> {
        if matches!(self.principal, Principal::Broker(_)) {
            return Ok(());
        }
        let who = self.principal.to_string();
        let quota = self.authorizer.quota_of(&who);
        self.authorizer.quotas.charge_upload(&who, quota.as_ref())
    }
}

/// The refusal of `operation` on a resource: names the right missing and
/// the command that grants it.
pub fn denied(
    principal: &Principal,
    resource: ResourceType,
    name: &str,
    operation: Operation,
) -> Status {
    let resource_flag = match resource {
        ResourceType::Cluster => "--cluster".to_string(),
        other => format!("--{other} {name}"),
    };
    Status::permission_denied(format!(
        "{principal} may not {operation} {resource} {name:?}: no ACL allows it (an administrator can grant it with `eddy acl add --allow {principal} --operation {operation} {resource_flag}`)"
    ))
}
