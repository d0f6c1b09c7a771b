//! Who may use the cluster, kept in the metadata quorum: users (their
//! SCRAM-SHA-256 credentials, never a password), API tokens (a hash of the
//! secret, never the secret), and access control lists as in Kafka.
//!
//! The decision itself, [`Acls::allows`], is here with the data: deny
//! wins; an operation on a resource needs an allow entry for the principal
//! (or every principal) on that resource (by its literal name, the `*`
//! wildcard, or a prefix); `Describe` is implied by any of `Read`,
//! `Write`, `Delete` and `Alter`, as Kafka has it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{MetaError, Result};

/// Fewest PBKDF2 iterations a stored credential may have (Kafka's minimum
/// for SCRAM-SHA-256).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// Longest user name.
pub const USER_NAME_LEN_MAX: usize = 255;

/// A salted SCRAM-SHA-256 credential (RFC 5802, the form Kafka stores):
/// the password itself cannot be read back from it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// SHA-256 of HMAC(SaltedPassword, "Client Key").
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A user who signs in with a password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMeta {
    pub name: String,
    pub credential: ScramCredential,
    /// When the user was created, ms since the epoch.
    pub created_ms: u64,
}

/// An API token: a secret shown once, of which the cluster keeps a hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenMeta {
    /// The public part of the token, which names it.
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// SHA-256 of the secret part.
    pub hash: [u8; 32],
    pub created_ms: u64,
    /// After this (ms since the epoch) the token is refused.
    pub expires_ms: Option<u64>,
}

impl fmt::Debug for TokenMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMeta")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Kinds of resource an ACL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    /// The cluster as a whole (its name is `eddy-cluster`).
    Cluster,
    Topic,
    Group,
    Processor,
    Pipeline,
}

/// The name the cluster resource goes by in ACLs.
pub const CLUSTER_RESOURCE: &str = "eddy-cluster";

/// What an ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Every operation.
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    /// Processors: upload a version.
    Upload,
    /// Pipelines: apply a manifest.
    Apply,
    /// The cluster: what pipeline workers do (watch every pipeline, report,
    /// fail one). Brokers may always.
    ClusterAction,
}

/// How an ACL's name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself, or every name if it is `*`.
    Literal,
    /// Every name starting with it.
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Allow,
    Deny,
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Acl {
    /// `User:NAME`, or `User:*` for every authenticated principal.
    pub principal: String,
    pub resource: ResourceType,
    pub pattern: PatternType,
    pub name: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Every principal, in an ACL.
pub const ANY_PRINCIPAL: &str = "User:*";

impl Acl {
    /// Whether this entry speaks about `principal` doing `operation` on the
    /// resource `resource`/`name`.
    fn covers(
        &self,
        principal: &str,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> bool {
        let who = self.principal == principal || self.principal == ANY_PRINCIPAL;
        let what = self.resource == resource
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == "*",
                PatternType::Prefixed => name.starts_with(&self.name),
            };
        let op = self.operation == Operation::All
            || self.operation == operation
            || (operation == Operation::Describe
                && self.permission == Permission::Allow
                && matches!(
                    self.operation,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ));
        who && what && op
    }

    pub fn check(&self) -> Result<()> {
        let Some((kind, who)) = self.principal.split_once(':') else {
            return Err(MetaError::Invalid(format!(
                "principal {:?} is not TYPE:NAME, e.g. User:alice or User:*",
                self.principal
            )));
        };
        if kind != "User" || who.is_empty() {
            return Err(MetaError::Invalid(format!(
                "principal {:?}: give User:NAME or User:*",
                self.principal
            )));
        }
        if self.name.is_empty() || self.name.len() > 1024 {
            return Err(MetaError::Invalid(
                "an ACL's resource name has 1 to 1024 characters (\"*\" for every one)".into(),
            ));
        }
        if self.resource == ResourceType::Cluster && self.name != CLUSTER_RESOURCE {
            return Err(MetaError::Invalid(format!(
                "the cluster resource is named {CLUSTER_RESOURCE:?}"
            )));
        }
        Ok(())
    }
}

/// The ACLs, and the decisions they make.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Acls(pub Vec<Acl>);

impl Acls {
    /// Whether `principal` may do `operation` on `resource`/`name`: some
    /// entry allows it and none denies it.
    pub fn allows(
        &self,
        principal: &str,
        resource: ResourceType,
        name: &str,
        operation: Operation,
    ) -> bool {
        let mut allowed = false;
        for acl in self
            .0
            .iter()
            .filter(|a| a.covers(principal, resource, name, operation))
        {
            match acl.permission {
                Permission::Deny => return false,
                Permission::Allow => allowed = true,
            }
        }
        allowed
    }

    /// Whether some entry lets `principal` do `operation` on some resource
    /// of this type (for calls that name none, like asking for a producer id).
    pub fn allows_some(
        &self,
        principal: &str,
        resource: ResourceType,
        operation: Operation,
    ) -> bool {
        self.0.iter().any(|a| {
            (a.principal == principal || a.principal == ANY_PRINCIPAL)
                && a.resource == resource
                && a.permission == Permission::Allow
                && (a.operation == operation || a.operation == Operation::All)
                && self.allows(principal, resource, &a.name, operation)
        })
    }
}

/// Limits on what one principal may use. `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Bytes a principal may produce per second; beyond it, answers are
    /// delayed (as Kafka throttles), never refused.
    pub produce_bytes_per_sec: Option<u64>,
    /// Bytes a principal may fetch per second, throttled the same way.
    pub fetch_bytes_per_sec: Option<u64>,
    /// Connections a principal may have open to one broker.
    pub connections: Option<u32>,
    /// Processor uploads a principal may make per hour, per broker.
    pub uploads_per_hour: Option<u32>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        *self == Quota::default()
    }
}

/// Users, tokens, ACLs and quotas, as the metadata holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    pub users: BTreeMap<String, UserMeta>,
    /// Tokens by id.
    pub tokens: BTreeMap<String, TokenMeta>,
    pub acls: Acls,
    /// Quotas by principal; `User:*` is the default for principals
    /// without their own.
    #[serde(default)]
    pub quotas: BTreeMap<String, Quota>,
}

impl Security {
    /// The quota that applies to `principal`: its own, else the default.
    pub fn quota_of(&self, principal: &str) -> Option<&Quota> {
        self.quotas
            .get(principal)
            .or_else(|| self.quotas.get(ANY_PRINCIPAL))
    }
}

/// User names: 1–255 characters of letters, digits and `._-@`.
pub fn validate_user_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > USER_NAME_LEN_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(MetaError::Invalid(format!(
            "user name {name:?} is not valid: use 1 to {USER_NAME_LEN_MAX} letters, digits, '.', '_', '-' or '@'"
        )));
    }
    Ok(())
}

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<$ty, String> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| {
                        let known: Vec<&str> = $ty::ALL.iter().map(|v| v.as_str()).collect();
                        format!("{s:?} is not one of: {}", known.join(", "))
                    })
            }
        }
    };
}

names!(ResourceType {
    Cluster = "cluster",
    Topic = "topic",
    Group = "group",
    Processor = "processor",
    Pipeline = "pipeline",
});

names!(Operation {
    All = "all",
    Read = "read",
    Write = "write",
    Create = "create",
    Delete = "delete",
    Alter = "alter",
    Describe = "describe",
    Upload = "upload",
    Apply = "apply",
    ClusterAction = "cluster-action",
});

names!(PatternType {
    Literal = "literal",
    Prefixed = "prefixed",
});

names!(Permission {
    Allow = "allow",
    Deny = "deny",
});

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(principal: &str, pattern: PatternType, name: &str, op: Operation, p: Permission) -> Acl {
        Acl {
            principal: principal.into(),
            resource: ResourceType::Topic,
            pattern,
            name: name.into(),
            operation: op,
            permission: p,
        }
    }

    #[test]
    fn deny_wins_over_allow() {
        let acls = Acls(vec![
            acl(
                "User:*",
                PatternType::Literal,
                "*",
                Operation::Read,
                Permission::Allow,
            ),
            acl(
                "User:bob",
                PatternType::Prefixed,
                "pay",
                Operation::Read,
                Permission::Deny,
            ),
        ]);
        let t = ResourceType::Topic;
        assert!(acls.allows("User:alice", t, "payments", Operation::Read));
        assert!(!acls.allows("User:bob", t, "payments", Operation::Read));
        assert!(acls.allows("User:bob", t, "orders", Operation::Read));
        assert!(!acls.allows("User:bob", t, "orders", Operation::Write));
    }

    #[test]
    fn names_match_literally_by_prefix_or_by_wildcard() {
        let acls = Acls(vec![
            acl(
                "User:a",
                PatternType::Literal,
                "orders",
                Operation::Write,
                Permission::Allow,
            ),
            acl(
                "User:a",
                PatternType::Prefixed,
                "logs.",
                Operation::All,
                Permission::Allow,
            ),
        ]);
        let t = ResourceType::Topic;
        assert!(acls.allows("User:a", t, "orders", Operation::Write));
        assert!(!acls.allows("User:a", t, "orders2", Operation::Write));
        assert!(acls.allows("User:a", t, "logs.app", Operation::Delete));
        assert!(!acls.allows("User:a", t, "logs", Operation::Read));
        assert!(!acls.allows("User:a", ResourceType::Group, "orders", Operation::Write));
        assert!(!acls.allows("User:b", t, "orders", Operation::Write));
    }

    #[test]
    fn read_write_delete_and_alter_imply_describe_but_deny_read_does_not_deny_describe() {
        let acls = Acls(vec![acl(
            "User:a",
            PatternType::Literal,
            "t",
            Operation::Write,
            Permission::Allow,
        )]);
        assert!(acls.allows("User:a", ResourceType::Topic, "t", Operation::Describe));
        assert!(!acls.allows("User:a", ResourceType::Topic, "t", Operation::Read));
        let acls = Acls(vec![
            acl(
                "User:a",
                PatternType::Literal,
                "t",
                Operation::Describe,
                Permission::Allow,
            ),
            acl(
                "User:a",
                PatternType::Literal,
                "t",
                Operation::Read,
                Permission::Deny,
            ),
        ]);
        assert!(acls.allows("User:a", ResourceType::Topic, "t", Operation::Describe));
    }

    #[test]
    fn allows_some_respects_denials() {
        let acls = Acls(vec![
            acl(
                "User:a",
                PatternType::Literal,
                "t",
                Operation::Write,
                Permission::Allow,
            ),
            acl(
                "User:a",
                PatternType::Literal,
                "t",
                Operation::Write,
                Permission::Deny,
            ),
        ]);
        assert!(!acls.allows_some("User:a", ResourceType::Topic, Operation::Write));
        let acls = Acls(vec![acl(
            "User:a",
            PatternType::Prefixed,
            "x",
            Operation::Write,
            Permission::Allow,
        )]);
        assert!(acls.allows_some("User:a", ResourceType::Topic, Operation::Write));
        assert!(!acls.allows_some("User:b", ResourceType::Topic, Operation::Write));
    }

    #[test]
    fn names_parse_back() {
        for op in Operation::ALL {
            assert_eq!(op.as_str().parse::<Operation>(), Ok(*op));
        }
        assert!(
            "fly"
                .parse::<Operation>()
                .unwrap_err()
                .contains("cluster-action")
        );
    }
}
