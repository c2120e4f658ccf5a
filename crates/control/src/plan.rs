//! From manifest to desired nodes: names, ports, data dirs, credentials and
//! the rendered launch of every replica.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chainfleet_chains::{Adapter, Endpoint, LaunchSpec, NodeLayout};
use chainfleet_runtime::NodeSpec;
use chainfleet_spec::{Chain, Fleet, Network, Production, Role};

use crate::store::NodeRecord;
use crate::ControlError;

/// One node the manifest asks for, fully rendered.
#[derive(Debug, Clone)]
pub struct DesiredNode {
    /// Its record (ports and credentials), new or kept from the store.
    pub record: NodeRecord,
    /// The chain.
    pub chain: Chain,
    /// The network.
    pub network: Network,
    /// Its role.
    pub role: Role,
    /// Devnet production settings, for producers.
    pub production: Option<Production>,
    /// What the runtime needs to start it.
    pub spec: NodeSpec,
    /// Where its RPC answers.
    pub endpoint: Endpoint,
    /// How long a graceful stop may take.
    pub stop_timeout: Duration,
    /// Nodes of this and peered instances: one chain, for lag and sync.
    pub network_group: usize,
}

impl DesiredNode {
    /// The adapter of its chain.
    pub fn adapter(&self) -> Adapter {
        Adapter::for_chain(self.chain)
    }

    /// The launch spec as stored with a running process.
    pub fn launch_json(&self) -> String {
        serde_json::to_string(&self.spec.launch).unwrap_or_default()
    }
}

/// Random hex token for generated RPC passwords.
fn random_hex(bytes: usize) -> Result<String, ControlError> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .map_err(|source| ControlError::Io {
            action: "read /dev/urandom for an RPC password".into(),
            source,
        })?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// Render every desired node. `existing` keeps ports and credentials stable
/// across restarts; ports the manifest omits are picked free.
pub fn plan(
    fleet: &Fleet,
    state_dir: &Path,
    existing: &[NodeRecord],
) -> Result<Vec<DesiredNode>, ControlError> {
    let known: HashMap<&str, &NodeRecord> = existing.iter().map(|r| (r.name.as_str(), r)).collect();
    let explicit: HashSet<u16> = fleet
        .instances
        .iter()
        .flat_map(|i| {
            (0..i.replicas).flat_map(move |r| {
                [i.ports.rpc, i.ports.p2p]
                    .into_iter()
                    .flatten()
                    .map(move |p| p.saturating_add(r as u16))
            })
        })
        .collect();
    let mut taken: HashSet<u16> = explicit.clone();
    let mut pick = |kept: Option<u16>| -> Result<u16, ControlError> {
        if let Some(port) = kept.filter(|p| !taken.contains(p)) {
            taken.insert(port);
            return Ok(port);
        }
        for _ in 0..100 {
            let port =
                chainfleet_runtime::ports::pick_free().map_err(|source| ControlError::Io {
                    action: "find a free port".into(),
                    source,
                })?;
            if taken.insert(port) {
                return Ok(port);
            }
        }
        Err(ControlError::Invalid(
            "could not find a free port after 100 tries".into(),
        ))
    };

    let groups = network_groups(fleet);
    let mut records: Vec<(usize, NodeRecord)> = Vec::new();
    for (index, instance) in fleet.instances.iter().enumerate() {
        for replica in 0..instance.replicas {
            let name = format!("{}-{replica}", instance.name);
            let old = known.get(name.as_str()).copied();
            let offset = replica as u16;
            let rpc_port = match instance.ports.rpc {
                Some(base) => base.saturating_add(offset),
                None => pick(old.map(|r| r.rpc_port))?,
            };
            let p2p_port = match instance.ports.p2p {
                Some(base) => base.saturating_add(offset),
                None => pick(old.map(|r| r.p2p_port))?,
            };
            let record = match old {
                Some(old) => NodeRecord {
                    rpc_port,
                    p2p_port,
                    ..old.clone()
                },
                None => NodeRecord {
                    name: name.clone(),
                    instance: instance.name.clone(),
                    replica,
                    chain: instance.chain.as_str().to_string(),
                    data_dir: String::new(),
                    rpc_port,
                    p2p_port,
                    rpc_user: "chainfleet".into(),
                    rpc_password: random_hex(16)?,
                    pid: None,
                    start_ticks: None,
                    launch: None,
                    restarts: 0,
                },
            };
            records.push((index, record));
        }
    }

    // Every instance connects to its own other replicas and to its listed peers.
    let mut p2p_of_instance: BTreeMap<&str, Vec<(String, u16)>> = BTreeMap::new();
    for (index, record) in &records {
        p2p_of_instance
            .entry(fleet.instances[*index].name.as_str())
            .or_default()
            .push((record.name.clone(), record.p2p_port));
    }

    let mut out = Vec::new();
    for (index, mut record) in records {
        let instance = &fleet.instances[index];
        let adapter = Adapter::for_chain(instance.chain);
        let mut peer_p2p_ports = Vec::new();
        for peer_instance in std::iter::once(&instance.name).chain(instance.peers.iter()) {
            for (peer_name, port) in p2p_of_instance
                .get(peer_instance.as_str())
                .into_iter()
                .flatten()
            {
                if *peer_name != record.name {
                    peer_p2p_ports.push(*port);
                }
            }
        }
        let data_dir = match &instance.data_dir {
            Some(dir) if dir.is_absolute() => dir.join(record.replica.to_string()),
            Some(dir) => state_dir.join(dir).join(record.replica.to_string()),
            None => state_dir.join("nodes").join(&record.name),
        };
        record.data_dir = data_dir.display().to_string();
        record.chain = instance.chain.as_str().to_string();
        let layout = NodeLayout {
            name: record.name.clone(),
            chain: instance.chain,
            network: instance.network,
            role: instance.role,
            client: instance.client.clone(),
            data_dir: data_dir.clone(),
            rpc_port: record.rpc_port,
            p2p_port: record.p2p_port,
            rpc_user: record.rpc_user.clone(),
            rpc_password: record.rpc_password.clone(),
            peer_p2p_ports,
        };
        let launch: LaunchSpec = adapter
            .launch(&layout)
            .map_err(|source| ControlError::Chain {
                node: record.name.clone(),
                source,
            })?;
        let spec = NodeSpec {
            name: record.name.clone(),
            launch,
            data_dir,
            log_path: log_path(state_dir, &record.name),
            ports: vec![
                ("rpc".into(), record.rpc_port),
                ("p2p".into(), record.p2p_port),
            ],
            run_as: fleet.settings.run_as.clone(),
        };
        let production = match (
            instance.role,
            instance.network.is_local(),
            &instance.production,
        ) {
            (Role::Producer, true, Some(p)) => Some(p.clone()),
            (Role::Producer, true, None) => Some(Production {
                block_interval: chainfleet_spec::DurationText(Duration::from_secs(5)),
                reward_address: None,
            }),
            _ => None,
        };
        out.push(DesiredNode {
            endpoint: adapter.endpoint(&layout),
            chain: instance.chain,
            network: instance.network,
            role: instance.role,
            production,
            spec,
            stop_timeout: instance.stop_timeout.get(),
            network_group: groups.get(index).copied().unwrap_or(index),
            record,
        });
    }
    Ok(out)
}

/// Where a node's log file lives.
pub fn log_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("logs").join(format!("{node}.log"))
}

/// Group id per instance: instances linked by `peers` share one chain.
fn network_groups(fleet: &Fleet) -> Vec<usize> {
    let index_of: HashMap<&str, usize> = fleet
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| (inst.name.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..fleet.instances.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, instance) in fleet.instances.iter().enumerate() {
        for peer in &instance.peers {
            if let Some(&j) = index_of.get(peer.as_str()) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    (0..fleet.instances.len())
        .map(|i| root(&mut parent, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
instances:
  - name: a
    chain: litecoin
    replicas: 2
    ports: {rpc: 30000}
  - name: b
    chain: litecoin
    peers: [a]
  - name: c
    chain: litecoin
";

    #[test]
    fn ports_are_stable_peers_are_linked_and_groups_follow_peers() {
        let fleet = chainfleet_spec::parse(FLEET, "t.yaml")
            .expect("valid")
            .fleet;
        let dir = Path::new("/tmp/state-x");
        let first = plan(&fleet, dir, &[]).expect("plan");
        assert_eq!(first.len(), 4);
        assert_eq!(first[0].record.rpc_port, 30000);
        assert_eq!(first[1].record.rpc_port, 30001);
        let records: Vec<NodeRecord> = first.iter().map(|d| d.record.clone()).collect();
        let second = plan(&fleet, dir, &records).expect("replan");
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.record, b.record, "ports and credentials must stay stable");
        }
        let all_ports: HashSet<u16> = first
            .iter()
            .flat_map(|d| [d.record.rpc_port, d.record.p2p_port])
            .collect();
        assert_eq!(all_ports.len(), 8, "ports must not clash");
        // b-0 connects to both a replicas; a-0 to a-1.
        let b = &first[2];
        let b_args = b
            .spec
            .launch
            .config_file
            .as_ref()
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
            + &b.spec.launch.args.join(" ");
        for a in &first[..2] {
            assert!(
                b_args.contains(&a.record.p2p_port.to_string()),
                "b lacks peer {}",
                a.record.name
            );
        }
        assert_eq!(first[0].network_group, first[2].network_group);
        assert_ne!(first[0].network_group, first[3].network_group);
        assert!(first[0].spec.data_dir.ends_with("nodes/a-0"));
    }
}
