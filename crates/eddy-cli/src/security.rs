//! `eddy user …`, `eddy token …`, `eddy acl …` and `eddy whoami`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use eddy_client::Security;
use eddy_proto::v1::AclEntry;

use crate::connection::first_line;
use crate::out::outln;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. Its password is read from --new-password-file, else
    /// from the first line of stdin; never from the command line.
    Create {
        name: String,
        /// A file whose first line is the user's password (at least 8 characters).
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// List users (never their credentials).
    List,
    /// Delete a user and revoke its tokens (its ACLs stay).
    Delete { name: String },
    /// Set a user's password (read as for `create`). A user may set its
    /// own; anyone else's needs alter on the cluster.
    Passwd {
        name: String,
        /// A file whose first line is the new password.
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user and print it, once: the cluster keeps
    /// only a hash. Services pass it in EDDY_TOKEN or --token-file.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// Lifetime, e.g. `30d`, `12h` (default: never expires).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// List tokens (their ids, users and expiry; never their secrets).
    List {
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token, by its id or the whole token.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow or deny a principal operations on a resource, as in Kafka:
    /// deny wins over allow, and reading, writing, deleting or altering
    /// a resource implies describing it.
    Add(AclArgs),
    /// Remove entries exactly as they were added.
    Remove(AclArgs),
    /// List entries.
    List {
        /// Only entries of this principal (User:NAME).
        #[arg(long)]
        principal: Option<String>,
        /// Only entries on this resource type.
        #[arg(long, value_name = "TYPE")]
        resource_type: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AclArgs {
    /// The principal to allow: User:NAME, or User:* for everyone.
    #[arg(
        long,
        value_name = "PRINCIPAL",
        conflicts_with = "deny",
        required_unless_present = "deny"
    )]
    allow: Option<String>,
    /// The principal to deny: User:NAME, or User:* for everyone.
    #[arg(long, value_name = "PRINCIPAL")]
    deny: Option<String>,
    /// Operations, comma-separated: all, read, write, create, delete,
    /// alter, describe, upload (processors), apply (pipelines),
    /// cluster-action (pipeline workers, on the cluster).
    #[arg(
        long = "operation",
        value_name = "OP",
        value_delimiter = ',',
        required = true
    )]
    operations: Vec<String>,
    /// A topic (`*` for every topic).
    #[arg(long, group = "resource")]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long, group = "resource")]
    group: Option<String>,
    /// A processor.
    #[arg(long, group = "resource")]
    processor: Option<String>,
    /// A pipeline.
    #[arg(long, group = "resource")]
    pipeline: Option<String>,
    /// The cluster as a whole (users, tokens, ACLs; workers).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// Match every name starting with the given one.
    #[arg(long)]
    prefixed: bool,
}

impl AclArgs {
    fn entries(&self) -> anyhow::Result<Vec<AclEntry>> {
        let (principal, permission) = match (&self.allow, &self.deny) {
            (Some(p), None) => (p, "allow"),
            (None, Some(p)) => (p, "deny"),
            _ => bail!("give one of --allow PRINCIPAL or --deny PRINCIPAL"),
        };
        let (resource_type, name) = if let Some(t) = &self.topic {
            ("topic", t.as_str())
        } else if let Some(g) = &self.group {
            ("group", g.as_str())
        } else if let Some(p) = &self.processor {
            ("processor", p.as_str())
        } else if let Some(p) = &self.pipeline {
            ("pipeline", p.as_str())
        } else if self.cluster {
            ("cluster", "")
        } else {
            bail!("name a resource: --topic, --group, --processor, --pipeline or --cluster");
        };
        let pattern = if self.prefixed { "prefixed" } else { "literal" };
        Ok(self
            .operations
            .iter()
            .map(|op| AclEntry {
                principal: principal.clone(),
                resource_type: resource_type.to_string(),
                name: name.to_string(),
                pattern: pattern.to_string(),
                operation: op.trim().to_string(),
                permission: permission.to_string(),
            })
            .collect())
    }
}

/// A password from `file`, else the first line of stdin.
fn read_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    if let Some(path) = file {
        return first_line(path, "password");
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprint!("new password (it will show as you type; or use --new-password-file): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("no password given: pass --new-password-file FILE or write it to stdin");
    }
    Ok(password)
}

fn time(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub async fn user(cmd: UserCommand, conn: &Connection) -> anyhow::Result<()> {
    // Read before connecting: a prompt should not wait on the network.
    let password = match &cmd {
        UserCommand::Create {
            new_password_file, ..
        }
        | UserCommand::Passwd {
            new_password_file, ..
        } => Some(read_password(new_password_file.as_ref())?),
        _ => None,
    };
    let security = Security::new(connect(conn).await?);
    match cmd {
        UserCommand::Create { name, .. } => {
            let u = security
                .create_user(&name, password.as_deref().unwrap_or_default())
                .await?;
            eprintln!(
                "created user {} (SCRAM-SHA-256, {} iterations)",
                u.name, u.iterations
            );
        }
        UserCommand::Passwd { name, .. } => {
            security
                .change_password(&name, password.as_deref().unwrap_or_default())
                .await?;
            eprintln!("changed the password of {name}");
        }
        UserCommand::List => {
            outln!("{:<32}  CREATED", "USER");
            for u in security.list_users().await? {
                outln!("{:<32}  {}", u.name, time(u.created_ms));
            }
        }
        UserCommand::Delete { name } => {
            let revoked = security.delete_user(&name).await?;
            eprintln!("deleted user {name} and revoked its {revoked} token(s)");
        }
    }
    Ok(())
}

pub async fn token(cmd: TokenCommand, conn: &Connection) -> anyhow::Result<()> {
    let security = Security::new(connect(conn).await?);
    match cmd {
        TokenCommand::Create { user, expires } => {
            let ms = expires.map_or(0, |d| d.as_millis() as u64);
            let created = security.create_token(&user, ms).await?;
            let expires = created.token.as_ref().map_or(0, |t| t.expires_ms);
            eprintln!(
                "created a token for {user} (expires: {}); it is shown only now:",
                time(expires)
            );
            outln!("{}", created.secret);
        }
        TokenCommand::List { user } => {
            outln!("{:<18}  {:<24}  {:<20}  EXPIRES", "ID", "USER", "CREATED");
            for t in security.list_tokens(user.as_deref().unwrap_or("")).await? {
                outln!(
                    "{:<18}  {:<24}  {:<20}  {}",
                    t.id,
                    t.user,
                    time(t.created_ms),
                    time(t.expires_ms)
                );
            }
        }
        TokenCommand::Revoke { id } => {
            security.revoke_token(&id).await?;
            eprintln!("revoked the token");
        }
    }
    Ok(())
}

pub async fn acl(cmd: AclCommand, conn: &Connection) -> anyhow::Result<()> {
    let security = Security::new(connect(conn).await?);
    match cmd {
        AclCommand::Add(args) => {
            let added = security.add_acls(args.entries()?).await?;
            for a in &added {
                eprintln!("added: {}", show(a));
            }
        }
        AclCommand::Remove(args) => {
            let removed = security.remove_acls(args.entries()?).await?;
            for a in &removed {
                eprintln!("removed: {}", show(a));
            }
        }
        AclCommand::List {
            principal,
            resource_type,
        } => {
            outln!(
                "{:<6}  {:<20}  {:<14}  {:<10}  {:<9}  NAME",
                "",
                "PRINCIPAL",
                "OPERATION",
                "RESOURCE",
                "PATTERN"
            );
            let acls = security
                .list_acls(
                    principal.as_deref().unwrap_or(""),
                    resource_type.as_deref().unwrap_or(""),
                )
                .await?;
            for a in &acls {
                outln!(
                    "{:<6}  {:<20}  {:<14}  {:<10}  {:<9}  {}",
                    a.permission,
                    a.principal,
                    a.operation,
                    a.resource_type,
                    a.pattern,
                    a.name
                );
            }
        }
    }
    Ok(())
}

fn show(a: &AclEntry) -> String {
    format!(
        "{} {} {} on {} {} ({})",
        a.permission, a.principal, a.operation, a.resource_type, a.name, a.pattern
    )
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set a principal's limits on each broker (User:NAME, or User:* for
    /// everyone without their own). Limits not given are removed; give
    /// none to remove the quota. Past a rate, answers are delayed.
    Set {
        principal: String,
        /// Produce bytes per second.
        #[arg(long, value_name = "BYTES")]
        produce_bytes_per_sec: Option<u64>,
        /// Fetch bytes per second.
        #[arg(long, value_name = "BYTES")]
        fetch_bytes_per_sec: Option<u64>,
        /// Connections open at once.
        #[arg(long, value_name = "N")]
        connections: Option<u32>,
        /// Processor uploads per hour.
        #[arg(long, value_name = "N")]
        uploads_per_hour: Option<u32>,
    },
    /// List quotas.
    List,
}

pub async fn quota(cmd: QuotaCommand, conn: &Connection) -> anyhow::Result<()> {
    let security = Security::new(connect(conn).await?);
    match cmd {
        QuotaCommand::Set {
            principal,
            produce_bytes_per_sec,
            fetch_bytes_per_sec,
            connections,
            uploads_per_hour,
        } => {
            let entry = eddy_proto::v1::QuotaEntry {
                principal: principal.clone(),
                produce_bytes_per_sec: produce_bytes_per_sec.unwrap_or(0),
                fetch_bytes_per_sec: fetch_bytes_per_sec.unwrap_or(0),
                connections: connections.unwrap_or(0),
                uploads_per_hour: uploads_per_hour.unwrap_or(0),
            };
            security.set_quota(entry).await?;
            eprintln!("set the quota of {principal}");
        }
        QuotaCommand::List => {
            let limit = |v: u64| {
                if v == 0 {
                    "-".to_string()
                } else {
                    v.to_string()
                }
            };
            outln!(
                "{:<24}  {:>14}  {:>14}  {:>11}  {:>12}",
                "PRINCIPAL",
                "PRODUCE B/S",
                "FETCH B/S",
                "CONNECTIONS",
                "UPLOADS/HOUR"
            );
            for q in security.list_quotas().await? {
                outln!(
                    "{:<24}  {:>14}  {:>14}  {:>11}  {:>12}",
                    q.principal,
                    limit(q.produce_bytes_per_sec),
                    limit(q.fetch_bytes_per_sec),
                    limit(u64::from(q.connections)),
                    limit(u64::from(q.uploads_per_hour))
                );
            }
        }
    }
    Ok(())
}

pub async fn whoami(conn: &Connection) -> anyhow::Result<()> {
    let me = Security::new(connect(conn).await?).who_am_i().await?;
    outln!("{}", me.principal);
    if me.super_user {
        outln!("super user");
    }
    if !me.auth_required {
        outln!("(this broker does not require authentication: every call is allowed)");
    }
    Ok(())
}
