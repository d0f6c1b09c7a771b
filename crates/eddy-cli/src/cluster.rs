//! `eddy cluster …`

use clap::Subcommand;

use crate::out::outln;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the brokers, the controller leader, and partitions that are
    /// under-replicated (ISR smaller than the replica set) or offline (no
    /// leader).
    Describe,
}

pub async fn run(cmd: ClusterCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    match cmd {
        ClusterCommand::Describe => {
            let m = client.cluster_metadata().await?;
            outln!("cluster {}", m.cluster_id);
            if m.controller_id < 0 {
                outln!("controller  none (no majority of the voters answers)");
            } else {
                outln!("controller  {}", m.controller_id);
            }
            outln!("{:>6}  {:<30}  {:<7}  ROLE", "BROKER", "ADDRESS", "STATE");
            for b in &m.brokers {
                let role = if b.node_id == m.controller_id {
                    "controller leader"
                } else {
                    ""
                };
                // Fenced: silent past the session timeout (dead, paused or cut off).
                let state = if b.fenced { "fenced" } else { "alive" };
                outln!("{:>6}  {:<30}  {state:<7}  {role}", b.node_id, b.address);
            }
            let mut under = Vec::new();
            let mut offline = Vec::new();
            for t in &m.topics {
                for p in &t.partitions {
                    let name = format!("{}-{}", t.name, p.partition);
                    if p.leader < 0 {
                        offline.push(name);
                    } else if p.isr.len() < p.replicas.len() {
                        under.push(name);
                    }
                }
            }
            outln!("under-replicated partitions: {}", list(&under));
            outln!("offline partitions: {}", list(&offline));
        }
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        format!("{} ({})", names.len(), names.join(", "))
    }
}
