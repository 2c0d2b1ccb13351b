//! A private Redis Cluster of `redis-server` children: N primaries with R replicas each, on free
//! ports, no persistence, stopped (every process killed, every node's folder removed) on drop.
//!
//! Each node is a [`PrivateRedis`] started with cluster mode on; `redis-cli --cluster create`
//! joins them and assigns the slots, then [`PrivateCluster::start`] waits, with a deadline,
//! until every node sees every slot served and every replica in sync. `demo --cluster` and
//! `bench --cluster` start one; the tests start their own, as they start their own Redis.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::ops::private_redis::{free_port, PrivateRedis};

/// How long a primary may be unreachable before its replica takes over: short, so a test
/// sees a failover in seconds (Redis's default is 15 s).
pub const NODE_TIMEOUT_MS: u64 = 2000;
/// The slots a cluster has to cover.
const SLOTS: usize = 16384;
/// How long the cluster may take to form.
const FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// A running private cluster.
#[derive(Debug)]
pub struct PrivateCluster {
    /// By port; a killed node stays here, stopped, until the cluster is dropped.
    nodes: BTreeMap<u16, PrivateRedis>,
}

/// One line of CLUSTER NODES: a node's port, whether it serves slots, whether it is failed.
#[derive(Debug)]
struct NodeLine {
    port: u16,
    primary: bool,
    failed: bool,
    /// The node id, and for a replica its primary's.
    id: String,
    primary_id: Option<String>,
}

impl PrivateCluster {
    /// Starts `primaries` primaries (at least 3, as Redis requires) with `replicas` replicas
    /// each, and waits until the cluster serves every slot.
    pub fn start(primaries: usize, replicas: usize) -> Result<Self> {
        if primaries < 3 {
            bail!("a Redis Cluster needs at least 3 primaries, not {primaries}");
        }
        let mut nodes = BTreeMap::new();
        for _ in 0..primaries * (1 + replicas) {
            let node = start_node()?;
            nodes.insert(node.port(), node);
        }
        let cluster = PrivateCluster { nodes };
        cluster.create(replicas)?;
        cluster.wait_ok(FORM_TIMEOUT, |_| true)?;
        Ok(cluster)
    }

    /// `redis-cli --cluster create`: the first nodes become primaries, the others replicas.
    fn create(&self, replicas: usize) -> Result<()> {
        let mut cli = Command::new("redis-cli");
        cli.arg("--cluster").arg("create");
        for port in self.nodes.keys() {
            cli.arg(format!("127.0.0.1:{port}"));
        }
        let output = cli
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("cannot run redis-cli (is it installed?)")?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "redis-cli --cluster create failed ({}): {last}",
                output.status
            );
        }
        Ok(())
    }

    /// Every node, `127.0.0.1:port` comma-separated: the value for REDIS_CLUSTER_NODES.
    pub fn seeds(&self) -> String {
        let seeds: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        seeds.join(",")
    }

    /// Every node's port, killed ones included.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.keys().copied().collect()
    }

    /// The ports of the nodes that serve slots now (as a live node sees it), in order.
    pub fn primaries(&self) -> Result<Vec<u16>> {
        Ok(self
            .view()?
            .iter()
            .filter(|n| n.primary && !n.failed)
            .map(|n| n.port)
            .collect())
    }

    /// The ports of `primary`'s replicas.
    pub fn replicas_of(&self, primary: u16) -> Result<Vec<u16>> {
        let view = self.view()?;
        let Some(id) = view
            .iter()
            .find(|n| n.port == primary)
            .map(|n| n.id.clone())
        else {
            bail!("no node on port {primary}");
        };
        Ok(view
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(id.as_str()))
            .map(|n| n.port)
            .collect())
    }

    /// Kills one node with SIGKILL: its connections drop, its keys are gone, and after
    /// [`NODE_TIMEOUT_MS`] its replica takes its slots over.
    pub fn kill(&mut self, port: u16) {
        if let Some(node) = self.nodes.get_mut(&port) {
            node.kill();
        }
    }

    /// Waits until `replica` serves slots as a primary and every live node again sees every
    /// slot served.
    pub fn wait_promoted(&self, replica: u16, timeout: Duration) -> Result<()> {
        self.wait_ok(timeout, |view| {
            view.iter()
                .any(|n| n.port == replica && n.primary && !n.failed)
        })
    }

    /// Waits until every live node reports `cluster_state:ok` with every slot served, every
    /// live replica is in sync, and `also` holds for each node's CLUSTER NODES.
    fn wait_ok(&self, timeout: Duration, also: impl Fn(&[NodeLine]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no node answered");
        while Instant::now() < deadline {
            match self.all_ok(&also) {
                Ok(()) => return Ok(()),
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("the private Redis Cluster was not ready within {timeout:?}: {last}")
    }

    fn all_ok(&self, also: &impl Fn(&[NodeLine]) -> bool) -> Result<()> {
        for port in self.live_ports() {
            let info: String = query(port, &["CLUSTER", "INFO"])?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_string()
            };
            if field("cluster_state") != "ok" || field("cluster_slots_ok") != SLOTS.to_string() {
                bail!("node {port}: cluster_state {}", field("cluster_state"));
            }
            let view = nodes_of(port)?;
            if !also(&view) {
                bail!("node {port} does not see the expected roles yet");
            }
            let me = view.iter().find(|n| n.port == port);
            if me.is_some_and(|n| !n.primary) {
                let replication: String = query(port, &["INFO", "replication"])?;
                if !replication.contains("master_link_status:up") {
                    bail!("replica {port} is not in sync with its primary yet");
                }
            }
        }
        Ok(())
    }

    /// CLUSTER NODES as the first live node sees it.
    fn view(&self) -> Result<Vec<NodeLine>> {
        let mut last = None;
        for port in self.live_ports() {
            match nodes_of(port) {
                Ok(view) => return Ok(view),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("every node of the cluster is stopped")))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.is_running())
            .map(|(port, _)| *port)
            .collect()
    }
}

/// One cluster-enabled node on free ports (its client port and its cluster bus port, which
/// would otherwise be the client port + 10000 and might be taken or past 65535).
fn start_node() -> Result<PrivateRedis> {
    let mut last = None;
    for _ in 0..3 {
        let bus_port = free_port()?.to_string();
        let timeout = NODE_TIMEOUT_MS.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &timeout,
            "--cluster-port",
            &bus_port,
        ];
        match PrivateRedis::start(&args) {
            Ok(node) => return Ok(node),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("unknown error")))
        .context("could not start a cluster node")
}

/// One command on one node, with a short timeout: a node that stalls is not ready.
fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Result<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    Ok(cmd.query(&mut conn)?)
}

/// CLUSTER NODES on `port`: `<id> <ip:port@bus> <flags> <primary id or -> …` per line.
fn nodes_of(port: u16) -> Result<Vec<NodeLine>> {
    let text: String = query(port, &["CLUSTER", "NODES"])?;
    Ok(text.lines().filter_map(parse_node_line).collect())
}

fn parse_node_line(line: &str) -> Option<NodeLine> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_string();
    let addr = fields.next()?;
    let flags: Vec<&str> = fields.next()?.split(',').collect();
    let primary_id = fields.next().filter(|p| *p != "-").map(str::to_string);
    let port = addr.split('@').next()?.rsplit_once(':')?.1.parse().ok()?;
    Some(NodeLine {
        port,
        primary: flags.contains(&"master"),
        failed: flags
            .iter()
            .any(|f| matches!(*f, "fail" | "fail?" | "noaddr")),
        id,
        primary_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_lines_are_read() {
        let primary = "07c3 127.0.0.1:30004@31004 myself,master - 0 0 1 connected 0-5460";
        let n = parse_node_line(primary).unwrap();
        assert_eq!((n.port, n.primary, n.failed), (30004, true, false));
        assert_eq!(n.primary_id, None);
        let replica = "e7d1 127.0.0.1:30005@31005 slave 07c3 0 1426238317239 4 connected";
        let n = parse_node_line(replica).unwrap();
        assert_eq!((n.port, n.primary), (30005, false));
        assert_eq!(n.primary_id.as_deref(), Some("07c3"));
        let dead = "07c3 127.0.0.1:30004@31004 master,fail - 0 0 1 disconnected";
        assert!(parse_node_line(dead).unwrap().failed);
    }
}
