//! The health model: from one probe round's observations to a derived state
//! per node (healthy, syncing, lagging, stalled, forked, down, crash-looping).
//!
//! Everything here is synchronous and pure except for the hash cache, so a
//! benchmark can drive it over synthetic snapshots. Fork checks need the
//! block hash at a common height from nodes that are not at that height:
//! [`HealthEngine::fork_queries`] says which, the caller fetches them, and
//! [`HealthEngine::assess`] takes the answers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, HealthDefaults, ProbeStatus};
use chainfleet_spec::{Chain, Network};
use serde::{Deserialize, Serialize};

/// A node's derived health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Answers, not syncing, at the quorum height, head moving.
    Healthy,
    /// The node says it is syncing.
    Syncing,
    /// Too many blocks behind the quorum height.
    Lagging,
    /// The head has not moved for too many expected block intervals.
    Stalled,
    /// Its block at a common height differs from the majority's.
    Forked,
    /// Not answering, or its process is not running.
    Down,
    /// Its process keeps crashing.
    CrashLooping,
    /// Not evaluated: the supervisor is starting, updating or stopping it.
    Pending,
}

impl Health {
    /// The word shown in status and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Syncing => "syncing",
            Health::Lagging => "lagging",
            Health::Stalled => "stalled",
            Health::Forked => "forked",
            Health::Down => "down",
            Health::CrashLooping => "crash-looping",
            Health::Pending => "pending",
        }
    }

    /// Every state, for metrics.
    pub const ALL: [Health; 8] = [
        Health::Healthy,
        Health::Syncing,
        Health::Lagging,
        Health::Stalled,
        Health::Forked,
        Health::Down,
        Health::CrashLooping,
        Health::Pending,
    ];
}

/// What the control plane knows about one node in this round.
#[derive(Debug, Clone)]
pub struct NodeInput {
    /// Node name.
    pub name: String,
    /// Instance name.
    pub instance: String,
    /// Chain.
    pub chain: Chain,
    /// Network.
    pub network: Network,
    /// Peered nodes of one chain share a group.
    pub group: usize,
    /// Supervisor state word (`healthy`, `unreachable`, `restarting`, ...).
    pub state: String,
    /// The probe of this round, when it succeeded.
    pub probe: Option<ProbeStatus>,
    /// Expected block interval on a local network (the group's producer's).
    pub local_interval: Option<Duration>,
    /// Data dir, for the disk check.
    pub data_dir: Option<PathBuf>,
}

/// An external reference endpoint's probe in this round.
#[derive(Debug, Clone)]
pub struct ReferenceInput {
    /// Its URL (its identity).
    pub url: String,
    /// The network group it is a reference for.
    pub group: usize,
    /// Its probe, when it answered.
    pub probe: Option<ProbeStatus>,
}

/// One source of a fork vote: a node (index into the inputs) or a reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A fleet node, by index.
    Node(usize),
    /// A reference endpoint, by index.
    Reference(usize),
}

/// A block hash the fork check needs: `source`'s block at `height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashQuery {
    /// Who to ask.
    pub source: Source,
    /// At which height.
    pub height: u64,
}

/// The health of one node after a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Derived state.
    pub state: Health,
    /// Why it is not healthy, when it is not.
    pub reason: Option<String>,
    /// Blocks behind the group's quorum height.
    pub lag: Option<u64>,
    /// The group's quorum height.
    pub quorum_height: Option<u64>,
    /// Seconds since the head last changed, as seen by the control plane.
    pub stale_seconds: Option<f64>,
    /// Expected block interval, seconds.
    pub block_interval_seconds: Option<f64>,
    /// Whether its block at the common height differs from the majority's.
    pub forked: bool,
    /// Percent of the data dir's file system in use.
    pub disk_used_percent: Option<f64>,
    /// The node's peers, for the low-peers rule.
    pub peers: Option<u32>,
    /// Nodes in its network group (low peers only matters with company).
    pub group_size: usize,
    /// Health defaults of its chain and network.
    #[serde(skip)]
    pub defaults: Option<HealthDefaults>,
}

#[derive(Debug)]
struct Memory {
    height: u64,
    hash: String,
    changed_at: Instant,
}

/// Per-node memory across rounds: when each head last changed, and block
/// hashes fetched for fork checks.
#[derive(Debug, Default)]
pub struct HealthEngine {
    memory: HashMap<String, Memory>,
    /// (source identity, height) -> (best hash when fetched, hash at height).
    hash_cache: HashMap<(String, u64), (String, String)>,
    /// Rounds since the disk was last checked.
    disk_round: u64,
    disk_cache: HashMap<PathBuf, f64>,
}

/// The quorum height of a set of heights: robust to one wildly wrong source.
///
/// With three or more sources it is the second-highest (one source claiming
/// a far-off height cannot move it); with one or two it is the highest.
pub fn quorum_height(heights: &mut [u64]) -> Option<u64> {
    if heights.is_empty() {
        return None;
    }
    heights.sort_unstable_by(|a, b| b.cmp(a));
    let k = if heights.len() >= 3 { 1 } else { 0 };
    heights.get(k).copied()
}

fn source_key(source: Source, nodes: &[NodeInput], refs: &[ReferenceInput]) -> Option<String> {
    match source {
        Source::Node(i) => nodes.get(i).map(|n| n.name.clone()),
        Source::Reference(i) => refs.get(i).map(|r| format!("ref:{}", r.url)),
    }
}

fn probe_of<'a>(
    source: Source,
    nodes: &'a [NodeInput],
    refs: &'a [ReferenceInput],
) -> Option<&'a ProbeStatus> {
    match source {
        Source::Node(i) => nodes.get(i).and_then(|n| n.probe.as_ref()),
        Source::Reference(i) => refs.get(i).and_then(|r| r.probe.as_ref()),
    }
}

/// Whether a node's supervisor state means it answers probes.
fn answering(state: &str) -> bool {
    matches!(state, "healthy" | "syncing")
}

/// The voters of each group: answering, non-syncing nodes and references.
fn voters(nodes: &[NodeInput], refs: &[ReferenceInput]) -> BTreeMap<usize, Vec<Source>> {
    let mut groups: BTreeMap<usize, Vec<Source>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if answering(&node.state) && node.probe.as_ref().is_some_and(|p| !p.syncing) {
            groups.entry(node.group).or_default().push(Source::Node(i));
        }
    }
    for (i, reference) in refs.iter().enumerate() {
        if reference.probe.is_some() {
            groups
                .entry(reference.group)
                .or_default()
                .push(Source::Reference(i));
        }
    }
    groups
}

/// Percent of a file system in use, as `df` computes it.
pub fn disk_used_percent(path: &std::path::Path) -> Option<f64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let blocks = stat.blocks() as f64;
    let free = stat.blocks_free() as f64;
    let available = stat.blocks_available() as f64;
    let used = blocks - free;
    let usable = used + available;
    (usable > 0.0).then(|| used * 100.0 / usable)
}

/// Voters more than this many blocks below the highest are left out of the
/// fork vote: they are lagging (and alerted as such), and comparing at their
/// height would look below the fork point.
const FORK_WINDOW: u64 = 10;

/// The height at which a group's voters compare block hashes: the lowest
/// height among those within [`FORK_WINDOW`] of the highest.
fn common_height(sources: &[Source], nodes: &[NodeInput], refs: &[ReferenceInput]) -> Option<u64> {
    let heights: Vec<u64> = sources
        .iter()
        .filter_map(|s| probe_of(*s, nodes, refs).map(|p| p.height))
        .collect();
    let highest = heights.iter().copied().max()?;
    heights
        .into_iter()
        .filter(|h| highest - h <= FORK_WINDOW)
        .min()
}

impl HealthEngine {
    /// A new engine with no memory.
    pub fn new() -> Self {
        HealthEngine::default()
    }

    /// The block hashes the fork check needs this round and does not have cached.
    pub fn fork_queries(&self, nodes: &[NodeInput], refs: &[ReferenceInput]) -> Vec<HashQuery> {
        let mut out = Vec::new();
        for sources in voters(nodes, refs).values() {
            if sources.len() < 2 {
                continue;
            }
            let Some(common) = common_height(sources, nodes, refs) else {
                continue;
            };
            for source in sources {
                let Some(probe) = probe_of(*source, nodes, refs) else {
                    continue;
                };
                if probe.height == common {
                    continue;
                }
                let cached = source_key(*source, nodes, refs)
                    .and_then(|key| self.hash_cache.get(&(key, common)))
                    .is_some_and(|(best, _)| *best == probe.best_hash);
                if !cached {
                    out.push(HashQuery {
                        source: *source,
                        height: common,
                    });
                }
            }
        }
        out
    }

    /// Remember hashes fetched for [`HealthEngine::fork_queries`].
    pub fn remember_hashes(
        &mut self,
        nodes: &[NodeInput],
        refs: &[ReferenceInput],
        answers: impl IntoIterator<Item = (HashQuery, String)>,
    ) {
        for (query, hash) in answers {
            let (Some(key), Some(probe)) = (
                source_key(query.source, nodes, refs),
                probe_of(query.source, nodes, refs),
            ) else {
                continue;
            };
            self.hash_cache
                .insert((key, query.height), (probe.best_hash.clone(), hash));
        }
    }

    /// The hash of `source` at `height`, from its probe or the cache.
    fn hash_at<'a>(
        &'a self,
        source: Source,
        height: u64,
        nodes: &'a [NodeInput],
        refs: &'a [ReferenceInput],
    ) -> Option<&'a str> {
        let probe = probe_of(source, nodes, refs)?;
        if probe.height == height {
            return Some(&probe.best_hash);
        }
        let key = source_key(source, nodes, refs)?;
        self.hash_cache
            .get(&(key, height))
            .filter(|(best, _)| *best == probe.best_hash)
            .map(|(_, hash)| hash.as_str())
    }

    /// Assess every node (same order as `nodes`).
    pub fn assess(
        &mut self,
        nodes: &[NodeInput],
        refs: &[ReferenceInput],
        now: Instant,
    ) -> Vec<NodeHealth> {
        // Quorum height per group, from answering nodes and references.
        let mut heights: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        let mut group_sizes: HashMap<usize, usize> = HashMap::new();
        for node in nodes {
            *group_sizes.entry(node.group).or_default() += 1;
            if let Some(probe) = node.probe.as_ref().filter(|_| answering(&node.state)) {
                heights.entry(node.group).or_default().push(probe.height);
            }
        }
        for reference in refs {
            if let Some(probe) = &reference.probe {
                heights
                    .entry(reference.group)
                    .or_default()
                    .push(probe.height);
            }
        }
        let quorum: HashMap<usize, u64> = heights
            .into_iter()
            .filter_map(|(group, mut list)| quorum_height(&mut list).map(|q| (group, q)))
            .collect();

        // Fork votes: the majority hash at the common height of each group.
        let mut forked: Vec<Option<(u64, String)>> = vec![None; nodes.len()];
        for sources in voters(nodes, refs).values() {
            if sources.len() < 2 {
                continue;
            }
            let Some(common) = common_height(sources, nodes, refs) else {
                continue;
            };
            let votes: Vec<(Source, &str)> = sources
                .iter()
                .filter_map(|s| self.hash_at(*s, common, nodes, refs).map(|h| (*s, h)))
                .collect();
            let mut tally: HashMap<&str, usize> = HashMap::new();
            for (_, hash) in &votes {
                *tally.entry(hash).or_default() += 1;
            }
            let Some((majority, count)) = tally.iter().max_by_key(|(_, c)| **c) else {
                continue;
            };
            if *count * 2 <= votes.len() {
                continue; // no strict majority: cannot tell who forked
            }
            for (source, hash) in &votes {
                if let (Source::Node(i), true) = (source, hash != majority) {
                    if let Some(slot) = forked.get_mut(*i) {
                        *slot = Some((common, (*majority).to_string()));
                    }
                }
            }
        }

        self.disk_round = self.disk_round.wrapping_add(1);
        let refresh_disk = self.disk_round % 15 == 1;
        if refresh_disk {
            self.disk_cache.clear();
        }

        let mut out = Vec::with_capacity(nodes.len());
        for (node, fork) in nodes.iter().zip(forked) {
            let defaults =
                Adapter::for_chain(node.chain).health_defaults(node.network, node.local_interval);
            let interval = defaults.block_interval;
            let mut health = NodeHealth {
                state: Health::Healthy,
                reason: None,
                lag: None,
                quorum_height: quorum.get(&node.group).copied(),
                stale_seconds: None,
                block_interval_seconds: interval.map(|d| d.as_secs_f64()),
                forked: false,
                disk_used_percent: None,
                peers: node.probe.as_ref().map(|p| p.peers),
                group_size: group_sizes.get(&node.group).copied().unwrap_or(1),
                defaults: Some(defaults),
            };
            if let Some(dir) = &node.data_dir {
                health.disk_used_percent = match self.disk_cache.get(dir) {
                    Some(percent) => Some(*percent),
                    None => {
                        let percent = disk_used_percent(dir);
                        if let Some(p) = percent {
                            self.disk_cache.insert(dir.clone(), p);
                        }
                        percent
                    }
                };
            }
            match node.state.as_str() {
                "unreachable" | "failed" | "restarting" => {
                    health.state = Health::Down;
                    health.reason = Some(format!("{} (supervisor)", node.state));
                    out.push(health);
                    continue;
                }
                "crash-looping" => {
                    health.state = Health::CrashLooping;
                    health.reason = Some("3 or more crashes within 5 minutes".into());
                    out.push(health);
                    continue;
                }
                "healthy" | "syncing" => {}
                _ => {
                    health.state = Health::Pending;
                    out.push(health);
                    continue;
                }
            }
            let Some(probe) = &node.probe else {
                health.state = Health::Pending;
                out.push(health);
                continue;
            };
            // Head change tracking for stall detection.
            let memory = self
                .memory
                .entry(node.name.clone())
                .or_insert_with(|| Memory {
                    height: probe.height,
                    hash: probe.best_hash.clone(),
                    changed_at: now,
                });
            if memory.height != probe.height || memory.hash != probe.best_hash {
                memory.height = probe.height;
                memory.hash = probe.best_hash.clone();
                memory.changed_at = now;
            }
            let stale = now.saturating_duration_since(memory.changed_at);
            health.stale_seconds = Some(stale.as_secs_f64());
            health.lag = health.quorum_height.map(|q| q.saturating_sub(probe.height));

            let lag = health.lag.unwrap_or(0);
            let stalled_intervals = interval
                .filter(|i| !i.is_zero())
                .map(|i| stale.as_secs_f64() / i.as_secs_f64());
            if let Some((height, majority)) = fork {
                health.forked = true;
                health.state = Health::Forked;
                health.reason = Some(format!(
                    "block at height {height} differs from the majority's {}",
                    short_hash(&majority)
                ));
            } else if stalled_intervals.is_some_and(|n| n >= defaults.stall_warning_intervals)
                && !probe.syncing
            {
                health.state = Health::Stalled;
                health.reason = Some(format!(
                    "head {} unchanged for {:.0}s ({:.1} block intervals)",
                    probe.height,
                    stale.as_secs_f64(),
                    stalled_intervals.unwrap_or(0.0)
                ));
            } else if lag >= defaults.lag_warning_blocks {
                health.state = Health::Lagging;
                health.reason = Some(format!(
                    "{lag} blocks behind the quorum height {}",
                    health.quorum_height.unwrap_or(0)
                ));
            } else if probe.syncing {
                health.state = Health::Syncing;
                health.reason = Some("the node says it is syncing".into());
            }
            out.push(health);
        }
        // Forget nodes that are gone.
        if self.memory.len() > nodes.len() {
            let names: std::collections::HashSet<&str> =
                nodes.iter().map(|n| n.name.as_str()).collect();
            self.memory.retain(|name, _| names.contains(name.as_str()));
        }
        if self.hash_cache.len() > 4 * (nodes.len() + refs.len()) + 16 {
            self.hash_cache.clear();
        }
        out
    }
}

/// The first 12 characters of a hash, for messages.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, height: u64, hash: &str) -> NodeInput {
        NodeInput {
            name: name.into(),
            instance: "ltc".into(),
            chain: Chain::Litecoin,
            network: Network::Regtest,
            group: 0,
            state: "healthy".into(),
            probe: Some(ProbeStatus {
                height,
                best_hash: hash.into(),
                peers: 2,
                ..ProbeStatus::default()
            }),
            local_interval: Some(Duration::from_secs(2)),
            data_dir: None,
        }
    }

    #[test]
    fn quorum_ignores_one_wild_source() {
        assert_eq!(quorum_height(&mut [10, 10, 1_000_000]), Some(10));
        assert_eq!(quorum_height(&mut [10, 0, 10]), Some(10));
        assert_eq!(quorum_height(&mut [10, 3]), Some(10));
        assert_eq!(quorum_height(&mut []), None);
    }

    #[test]
    fn a_wild_reference_does_not_make_the_fleet_lag() {
        let mut engine = HealthEngine::new();
        let nodes = vec![node("a", 10, "h10"), node("b", 10, "h10")];
        let refs = vec![ReferenceInput {
            url: "http://x".into(),
            group: 0,
            probe: Some(ProbeStatus {
                height: 9_999_999,
                best_hash: "zz".into(),
                ..ProbeStatus::default()
            }),
        }];
        let health = engine.assess(&nodes, &refs, Instant::now());
        assert!(health.iter().all(|h| h.lag == Some(0)), "{health:#?}");
    }

    #[test]
    fn lag_stall_and_fork_are_derived() {
        let mut engine = HealthEngine::new();
        let start = Instant::now();
        let mut nodes = vec![
            node("a", 20, "h20"),
            node("b", 20, "h20"),
            node("c", 12, "x12"),
        ];
        // c is behind: the others must say what they have at height 12.
        let queries = engine.fork_queries(&nodes, &[]);
        assert_eq!(queries.len(), 2);
        engine.remember_hashes(&nodes, &[], queries.into_iter().map(|q| (q, "h12".into())));
        let health = engine.assess(&nodes, &[], start);
        assert_eq!(health[2].state, Health::Forked, "{health:#?}");
        assert_eq!(health[0].state, Health::Healthy);
        // Same chain, just behind: lagging, not forked.
        nodes[2] = node("c", 12, "h12");
        let health = engine.assess(&nodes, &[], start);
        assert_eq!(health[2].state, Health::Lagging, "{health:#?}");
        assert_eq!(health[2].lag, Some(8));
        // No head change for 4 s at a 2 s interval: stalled (1.5 intervals).
        nodes[2] = node("c", 20, "h20");
        let health = engine.assess(&nodes, &[], start + Duration::from_secs(1));
        assert_eq!(health[2].state, Health::Healthy);
        let health = engine.assess(&nodes, &[], start + Duration::from_secs(5));
        assert_eq!(health[0].state, Health::Stalled, "{health:#?}");
    }

    #[test]
    fn a_far_behind_node_does_not_hide_a_fork() {
        let mut engine = HealthEngine::new();
        let nodes = vec![
            node("a", 50, "a50"),
            node("b", 50, "a50"),
            node("c", 50, "c50"),
            node("slow", 20, "a20"),
        ];
        // Compared at 50 (the slow node is out of the window), not at 20.
        let queries = engine.fork_queries(&nodes, &[]);
        assert!(queries.iter().all(|q| q.height == 50), "{queries:?}");
        let health = engine.assess(&nodes, &[], Instant::now());
        assert_eq!(health[2].state, Health::Forked, "{health:#?}");
        assert_eq!(health[0].state, Health::Healthy);
        assert_eq!(health[3].state, Health::Lagging);
    }

    #[test]
    fn supervisor_states_map_to_down() {
        let mut engine = HealthEngine::new();
        let mut a = node("a", 1, "h");
        a.state = "unreachable".into();
        a.probe = None;
        let mut b = node("b", 1, "h");
        b.state = "starting".into();
        let health = engine.assess(&[a, b], &[], Instant::now());
        assert_eq!(health[0].state, Health::Down);
        assert_eq!(health[1].state, Health::Pending);
    }
}
