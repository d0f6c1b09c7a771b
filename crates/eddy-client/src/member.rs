//! A consumer-group member that the caller drives itself, for programs
//! that read their partitions their own way (pipeline workers): join,
//! learn the assignment, hand partitions over, commit as the member.
//!
//! [`crate::Consumer::subscribe`] does all this inside `poll`; this is the
//! same membership without the consumer around it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::RwLock;

use crate::client::Client;
use crate::error::Result;
use crate::group::{GroupConfig, Membership, OffsetCommit, TopicPartition};

/// What one join gave the member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The group generation the member is now in.
    pub generation: i32,
    /// This member's partitions in that generation.
    pub partitions: BTreeSet<TopicPartition>,
    /// The coordinator had forgotten the member (silent past its session
    /// timeout) and it joined as a new one: whatever it owned before may
    /// already belong to another member, so nothing may be committed for it.
    pub lost: bool,
}

/// A group member; see the module docs.
#[derive(Debug)]
pub struct GroupMember {
    membership: Membership,
    identity: Arc<RwLock<Identity>>,
}

/// Who the member is in the current generation.
#[derive(Debug, Clone, Default)]
struct Identity {
    member_id: String,
    generation: i32,
}

impl GroupMember {
    /// A member of `config.group_id` for `topics`; it joins at [`GroupMember::join`].
    pub async fn new(client: &Client, config: GroupConfig, topics: Vec<String>) -> Result<Self> {
        Ok(GroupMember {
            membership: Membership::new(client, config, topics).await?,
            identity: Arc::new(RwLock::new(Identity::default())),
        })
    }

    /// Joins (or rejoins) and waits for the rebalance to complete. With the
    /// cooperative assignor the member keeps the partitions it reports as
    /// owned (see [`GroupMember::set_owned`]); a partition that moves is
    /// revoked first and handed over at the next rebalance.
    pub async fn join(&mut self) -> Result<Assignment> {
        let joined = self.membership.join().await?;
        *self.identity.write() = Identity {
            member_id: self.membership.member_id.clone(),
            generation: self.membership.generation,
        };
        if joined.lost {
            self.membership.assigned.clear();
        }
        Ok(Assignment {
            generation: self.membership.generation,
            partitions: joined.assignment,
            lost: joined.lost,
        })
    }

    /// The partitions the member owns now: reported at the next join, so
    /// that the coordinator knows which revoked ones it gave up.
    pub fn set_owned(&mut self, owned: BTreeSet<TopicPartition>) {
        self.membership.assigned = owned;
    }

    /// Whether the coordinator asked the member to rejoin (a rebalance
    /// started, or the member's generation or membership is gone).
    pub fn needs_rejoin(&self) -> bool {
        self.membership.need_rejoin.load(Ordering::Acquire)
    }

    pub fn member_id(&self) -> String {
        self.identity.read().member_id.clone()
    }

    pub fn generation(&self) -> i32 {
        self.identity.read().generation
    }

    /// A handle that commits as this member, in its current generation.
    pub fn committer(&self) -> Committer {
        Committer {
            membership: self.membership.commit_target(),
            identity: self.identity.clone(),
        }
    }

    /// The committed offsets (with metadata) of `partitions`; partitions
    /// without a commit are left out.
    pub async fn committed(
        &self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<Vec<OffsetCommit>> {
        self.membership.committed(partitions).await
    }

    /// Leaves the group at once, so its partitions move without waiting
    /// for the session timeout.
    pub async fn leave(&mut self) -> Result<()> {
        self.membership.leave().await
    }
}

/// Commits offsets as a [`GroupMember`], in whatever generation it is in
/// when the commit is sent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    membership: crate::group::CommitTarget,
    identity: Arc<RwLock<Identity>>,
}

impl Committer {
    /// Commits `offsets`; refused (ILLEGAL_GENERATION, UNKNOWN_MEMBER) once
    /// the member has left its generation without joining the next.
    pub async fn commit(&self, offsets: Vec<OffsetCommit>) -> Result<()> {
        let Identity {
            member_id,
            generation,
        } = self.identity.read().clone();
        self.membership.commit(member_id, generation, offsets).await
    }
}
