//! A fleet under test: a controller on a temp state dir, its loops running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_control::{Controller, ControllerOptions, FleetSnapshot, NodeStatus};
use chainfleet_runtime::ProcessRuntime;
use tokio::sync::watch;

/// A running fleet; nodes are killed on drop if the test did not stop them.
pub struct TestFleet {
    pub controller: Controller,
    pub dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    loops: Option<tokio::task::JoinHandle<()>>,
}

impl TestFleet {
    /// Start a fleet from manifest text (header added).
    pub async fn start(body: &str) -> TestFleet {
        let dir = chainfleet_testkit::temp_dir();
        let text = format!("apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\nsettings: {{probeInterval: 500ms}}\n{body}");
        let manifest = chainfleet_spec::parse(&text, "test.yaml").expect("test manifest is valid");
        let mut options = ControllerOptions::new(dir.path().join("state"));
        options.reconcile_interval = Duration::from_millis(250);
        let controller =
            Controller::open(options, Arc::new(ProcessRuntime::new())).expect("open controller");
        controller.apply(manifest).expect("apply");
        let (shutdown, rx) = watch::channel(false);
        let loops = {
            let controller = controller.clone();
            tokio::spawn(async move { controller.run(rx).await })
        };
        TestFleet {
            controller,
            dir,
            shutdown,
            loops: Some(loops),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Apply new manifest text (header added).
    pub fn apply(&self, body: &str) -> chainfleet_control::ApplySummary {
        let text = format!("apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\nsettings: {{probeInterval: 500ms}}\n{body}");
        let manifest = chainfleet_spec::parse(&text, "test.yaml").expect("valid manifest");
        self.controller.apply(manifest).expect("apply")
    }

    /// Wait until `check` holds for a snapshot, or fail with the last one.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&FleetSnapshot) -> bool,
    ) -> Arc<FleetSnapshot> {
        let start = Instant::now();
        let mut snapshots = self.controller.snapshots();
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if check(&snapshot) {
                return snapshot;
            }
            if start.elapsed() > limit {
                let events = self.controller.events_after(0, 1000).unwrap_or_default();
                panic!(
                    "timed out after {limit:?} waiting for {what}\nlast snapshot: {:#?}\nevents: {:#?}",
                    snapshot.nodes, events
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), snapshots.changed()).await;
        }
    }

    /// Stop the loops and every node cleanly.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(loops) = self.loops.take() {
            let _ = loops.await;
        }
        self.controller.stop_all().await.expect("stop all");
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        // A failed test must not leave daemons behind.
        for node in &self.controller.snapshot().nodes {
            if let Some(pid) = node.pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

pub fn node<'a>(snapshot: &'a FleetSnapshot, name: &str) -> &'a NodeStatus {
    snapshot
        .nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name} in {snapshot:#?}"))
}

/// Call `litecoin-cli` against a node of the fleet, by its rendered config.
pub fn litecoin_cli(state_dir: &Path, node: &str, args: &[&str]) -> String {
    let data_dir = state_dir.join("nodes").join(node);
    let output = std::process::Command::new("litecoin-cli")
        .arg(format!(
            "-conf={}",
            data_dir.join("litecoin.conf").display()
        ))
        .arg(format!("-datadir={}", data_dir.display()))
        .args(args)
        .output()
        .expect("run litecoin-cli (apt-get install litecoind)");
    assert!(
        output.status.success(),
        "litecoin-cli {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A valid litecoin regtest address for mining in tests.
pub fn mine(state_dir: &Path, node: &str, blocks: u32) {
    litecoin_cli(
        state_dir,
        node,
        &["generatetodescriptor", &blocks.to_string(), "raw(51)"],
    );
}

pub fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
}
