//! `up`, `status`, `logs`, `down`, and surviving `kill -9` of the control plane.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct ControlPlane {
    child: Child,
    api: String,
}

impl ControlPlane {
    fn start(manifest: &Path, state_dir: &Path) -> ControlPlane {
        let port = chainfleet_testkit::free_port();
        let log = std::fs::File::create(state_dir.with_extension(format!("cp-{port}.log"))).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_chainfleet"))
            .args(["up", "-f"])
            .arg(manifest)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chainfleet up");
        ControlPlane {
            child,
            api: format!("http://127.0.0.1:{port}"),
        }
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_chainfleet"))
            .args(args)
            .env("CHAINFLEET_API", &self.api)
            .output()
            .expect("run chainfleet")
    }

    fn nodes(&self) -> Option<Vec<serde_json::Value>> {
        let out = self.cli(&["status", "--json"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_nodes(&self, what: &str, mut check: impl FnMut(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let start = Instant::now();
        let mut last = None;
        while start.elapsed() < Duration::from_secs(90) {
            if let Some(nodes) = self.nodes() {
                if check(&nodes) {
                    return nodes;
                }
                last = Some(nodes);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("timed out waiting for {what}; last status: {last:#?}");
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pids(nodes: &[serde_json::Value]) -> Vec<u64> {
    let mut pids: Vec<u64> = nodes.iter().filter_map(|n| n["pid"].as_u64()).collect();
    pids.sort();
    pids
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn survives_kill_9_of_the_control_plane_without_duplicates() {
    let dir = chainfleet_testkit::temp_dir();
    let manifest = dir.path().join("fleet.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
settings: {probeInterval: 500ms}
instances:
  - name: ltc
    chain: litecoin
    replicas: 2
",
    )
    .expect("write manifest");
    let state = dir.path().join("state");
    let mut first = ControlPlane::start(&manifest, &state);
    let nodes = first.wait_nodes("two healthy nodes", |n| {
        n.len() == 2 && n.iter().all(|x| x["state"] == "healthy")
    });
    for field in ["name", "instance", "replica", "chain", "state", "height", "best_hash", "peers", "pid"] {
        assert!(nodes[0].get(field).is_some(), "status --json lacks {field}");
    }
    let before = pids(&nodes);
    assert_eq!(before.len(), 2);

    let table = first.cli(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("NAME") && table.contains("ltc-1") && table.contains("healthy"), "{table}");
    let logs = first.cli(&["logs", "ltc-0", "--tail", "5"]);
    assert!(logs.status.success() && !logs.stdout.is_empty(), "logs: {logs:?}");
    let unknown = first.cli(&["logs", "nope-0"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node is named `nope-0`"));

    // kill -9 the control plane: nodes keep running and are re-adopted.
    first.child.kill().expect("kill -9 control plane");
    first.child.wait().expect("reap");
    let state_str = state.to_string_lossy().to_string();
    assert_eq!(processes_mentioning(&format!("{state_str}/nodes/ltc-0")), 1);

    let second = ControlPlane::start(&manifest, &state);
    let nodes = second.wait_nodes("re-adopted nodes", |n| {
        n.len() == 2 && n.iter().all(|x| x["state"] == "healthy")
    });
    assert_eq!(pids(&nodes), before, "pids changed: nodes were restarted, not adopted");
    for node in ["ltc-0", "ltc-1"] {
        assert_eq!(
            processes_mentioning(&format!("{state_str}/nodes/{node}/")),
            1,
            "duplicate or missing process for {node}"
        );
    }
    let events = second.cli(&["events"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("re-adopted running pid"));

    let down = second.cli(&["down"]);
    assert!(down.status.success(), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped 2 nodes"));
    for pid in before {
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(status.is_empty() || status.contains(") Z"), "node pid {pid} still runs after down");
    }
}
