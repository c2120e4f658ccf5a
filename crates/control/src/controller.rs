//! The controller: reconcile loop, probe loop and devnet production.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chainfleet_chains::{Adapter, ProbeStatus, RpcClient, StopMethod};
use chainfleet_runtime::{
    logs, procfs, Liveness, NodeRuntime, NodeSpec, ProcessHandle, RuntimeError,
};
use chainfleet_spec::{Chain, Manifest};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use tokio::sync::{broadcast, watch, Notify};

use crate::plan::{self, DesiredNode};
use crate::store::{now_ms, Event, NodeRecord, Store};
use crate::{ControlError, FleetSnapshot, NodeStatus, Upstream, UpstreamSnapshot};

/// Crashes within this window that make a node crash-looping.
const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// Crashes within [`CRASH_WINDOW`] that count as a crash loop.
const CRASH_LOOP_COUNT: usize = 3;
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A node up this long has its back-off reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// Graceful-stop limit for a node no longer in the manifest (its own setting is gone).
const REMOVED_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept in status when a node fails.
const LOG_TAIL_LINES: usize = 10;

/// Settings of a controller.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// State directory: database, node data, logs.
    pub state_dir: PathBuf,
    /// Reconcile tick.
    pub reconcile_interval: Duration,
}

impl ControllerOptions {
    /// Defaults for `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        ControllerOptions {
            state_dir: state_dir.into(),
            reconcile_interval: Duration::from_secs(1),
        }
    }
}

/// What an apply changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    /// Nodes that will be started.
    pub added: Vec<String>,
    /// Nodes that will be stopped and forgotten (their data dirs are kept).
    pub removed: Vec<String>,
    /// Nodes whose args or config changed: restarted one at a time per instance.
    pub changed: Vec<String>,
    /// Nodes left as they are.
    pub unchanged: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet in this control plane's life.
    New,
    /// Started; not yet healthy.
    Starting,
    /// Restarted for a changed launch; not yet healthy again.
    Updating,
    /// Healthy once since its start.
    Running,
    /// Exited; waiting to restart.
    Backoff,
    /// Could not be started; retried later.
    Failed,
    /// Being stopped.
    Stopping,
    /// Stopped on purpose.
    Stopped,
}

#[derive(Debug)]
struct Live {
    handle: Option<ProcessHandle>,
    phase: Phase,
    started_at: Option<Instant>,
    next_start: Option<Instant>,
    crash_times: VecDeque<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    log_tail: Vec<String>,
    probe: Option<ProbeStatus>,
    probe_error: Option<String>,
    probe_ok_since_start: bool,
    /// Restarts after crashes; mirrors the stored record, so status needs no store read.
    restarts: u32,
}

impl Live {
    fn new() -> Self {
        Live {
            handle: None,
            phase: Phase::New,
            started_at: None,
            next_start: None,
            crash_times: VecDeque::new(),
            consecutive_failures: 0,
            last_error: None,
            log_tail: Vec::new(),
            probe: None,
            probe_error: None,
            probe_ok_since_start: false,
            restarts: 0,
        }
    }

    fn crash_looping(&self) -> bool {
        self.crash_times.len() >= CRASH_LOOP_COUNT
    }

    fn healthy(&self) -> bool {
        self.probe_error.is_none() && self.probe.as_ref().is_some_and(|p| !p.syncing)
    }
}

struct Desired {
    manifest: Option<Manifest>,
    nodes: Vec<DesiredNode>,
}

struct Inner {
    options: ControllerOptions,
    store: Store,
    runtime: Arc<dyn NodeRuntime>,
    rpc: RpcClient,
    desired: RwLock<Desired>,
    live: Mutex<HashMap<String, Live>>,
    snapshot: watch::Sender<Arc<FleetSnapshot>>,
    upstreams: watch::Sender<Arc<UpstreamSnapshot>>,
    events: broadcast::Sender<Event>,
    wake: Notify,
    reconcile_lock: tokio::sync::Mutex<()>,
    producer_groups: Mutex<Vec<crate::failover::GroupStatus>>,
    /// Health, alerts and notifications (failover feeds `set_group_state`).
    monitor: crate::alerts::Monitor,
    shutting_down: std::sync::atomic::AtomicBool,
    _state_lock: Flock<File>,
}

/// The control plane of one fleet. Cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlError {
    let action = action.into();
    move |source| ControlError::Io { action, source }
}

/// Take the state dir's lock so two control planes never drive one fleet.
fn lock_state_dir(dir: &Path) -> Result<Flock<File>, ControlError> {
    use std::io::Write;
    let path = dir.join("chainfleet.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io(format!("open {}", path.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            locked.set_len(0).map_err(io("truncate the lock file"))?;
            let _ = write!(locked, "{}", std::process::id());
            Ok(locked)
        }
        Err((_, _)) => Err(ControlError::StateDirLocked {
            dir: dir.display().to_string(),
            holder: std::fs::read_to_string(&path)
                .ok()
                .map(|pid| format!("pid {}", pid.trim())),
        }),
    }
}

impl Controller {
    /// Open the state dir, load the stored manifest if any, and get ready to run.
    pub fn open(
        mut options: ControllerOptions,
        runtime: Arc<dyn NodeRuntime>,
    ) -> Result<Self, ControlError> {
        std::fs::create_dir_all(&options.state_dir).map_err(io(format!(
            "create state dir {}",
            options.state_dir.display()
        )))?;
        // Nodes run with their data dir as working directory: every path must be absolute.
        options.state_dir = std::fs::canonicalize(&options.state_dir).map_err(io(format!(
            "resolve state dir {}",
            options.state_dir.display()
        )))?;
        let state_lock = lock_state_dir(&options.state_dir)?;
        let store = Store::open(&options.state_dir.join("state.db"))?;
        let rpc = RpcClient::new(Duration::from_secs(5)).map_err(|source| ControlError::Chain {
            node: "-".into(),
            source,
        })?;
        let (snapshot, _) = watch::channel(Arc::new(FleetSnapshot::default()));
        let (upstreams, _) = watch::channel(Arc::new(UpstreamSnapshot::default()));
        let (events, _) = broadcast::channel(1024);
        let monitor = crate::alerts::Monitor::new(events.subscribe());
        let controller = Controller {
            inner: Arc::new(Inner {
                options,
                store,
                runtime,
                rpc,
                desired: RwLock::new(Desired {
                    manifest: None,
                    nodes: Vec::new(),
                }),
                live: Mutex::new(HashMap::new()),
                snapshot,
                upstreams,
                events,
                wake: Notify::new(),
                reconcile_lock: tokio::sync::Mutex::new(()),
                producer_groups: Mutex::new(Vec::new()),
                monitor,
                shutting_down: std::sync::atomic::AtomicBool::new(false),
                _state_lock: state_lock,
            }),
        };
        if let Some(text) = controller.inner.store.meta("manifest")? {
            let file = controller
                .inner
                .store
                .meta("manifest_file")?
                .unwrap_or_else(|| "stored manifest".into());
            let manifest = chainfleet_spec::parse(&text, &file)?;
            controller.set_desired(manifest)?;
        }
        Ok(controller)
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.options.state_dir
    }

    /// Whether a manifest has been applied.
    pub fn has_manifest(&self) -> bool {
        self.read_desired().manifest.is_some()
    }

    fn read_desired(&self) -> std::sync::RwLockReadGuard<'_, Desired> {
        self.inner.desired.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set_desired(&self, manifest: Manifest) -> Result<Vec<DesiredNode>, ControlError> {
        manifest.reject_if_any(chainfleet_chains::check_fleet(&manifest.fleet))?;
        let records = self.inner.store.nodes()?;
        let nodes = plan::plan(&manifest.fleet, &self.inner.options.state_dir, &records)?;
        let mut desired = self
            .inner
            .desired
            .write()
            .unwrap_or_else(|p| p.into_inner());
        desired.manifest = Some(manifest);
        desired.nodes = nodes.clone();
        Ok(nodes)
    }

    /// Make `manifest` the desired state; the reconcile loop converges to it.
    pub fn apply(&self, manifest: Manifest) -> Result<ApplySummary, ControlError> {
        let before: HashMap<String, String> = self
            .read_desired()
            .nodes
            .iter()
            .map(|n| (n.record.name.clone(), n.launch_json()))
            .collect();
        let text = manifest.source.clone();
        let file = manifest.file.clone();
        let nodes = self.set_desired(manifest)?;
        // Persist only once the manifest is known to be valid and plannable.
        self.inner.store.set_meta("manifest", &text)?;
        self.inner.store.set_meta("manifest_file", &file)?;
        let mut summary = ApplySummary::default();
        let mut seen = HashSet::new();
        for node in &nodes {
            let name = node.record.name.clone();
            seen.insert(name.clone());
            match before.get(&name) {
                None => summary.added.push(name),
                Some(launch) if *launch != node.launch_json() => summary.changed.push(name),
                Some(_) => summary.unchanged.push(name),
            }
        }
        summary.removed = before.into_keys().filter(|n| !seen.contains(n)).collect();
        summary.removed.sort();
        self.record_event(
            None,
            "applied",
            &format!(
                "manifest {file}: {} added, {} removed, {} changed",
                summary.added.len(),
                summary.removed.len(),
                summary.changed.len()
            ),
        );
        self.inner.wake.notify_one();
        Ok(summary)
    }

    /// The current manifest text, if any.
    pub fn manifest_text(&self) -> Option<String> {
        self.read_desired()
            .manifest
            .as_ref()
            .map(|m| m.source.clone())
    }

    /// The fleet name.
    pub fn fleet_name(&self) -> String {
        self.read_desired()
            .manifest
            .as_ref()
            .map(|m| m.fleet.metadata.name.clone())
            .unwrap_or_default()
    }

    /// Subscribe to status snapshots (one per probe round).
    pub fn snapshots(&self) -> watch::Receiver<Arc<FleetSnapshot>> {
        self.inner.snapshot.subscribe()
    }

    /// Subscribe to upstream snapshots for the gateway (same rounds as status snapshots).
    pub fn upstreams(&self) -> watch::Receiver<Arc<UpstreamSnapshot>> {
        self.inner.upstreams.subscribe()
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<FleetSnapshot> {
        self.inner.snapshot.borrow().clone()
    }

    /// Subscribe to new events.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Stored events after `after_id`.
    pub fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>, ControlError> {
        self.inner.store.events_after(after_id, limit)
    }

    /// The log file of a known node.
    fn log_of(&self, node: &str) -> Result<PathBuf, ControlError> {
        let known = self
            .read_desired()
            .nodes
            .iter()
            .any(|n| n.record.name == node)
            || self.inner.store.nodes()?.iter().any(|r| r.name == node);
        if !known {
            return Err(ControlError::UnknownNode(node.to_string()));
        }
        Ok(plan::log_path(&self.inner.options.state_dir, node))
    }

    /// A chunk of a node's log from `offset`, and the next offset.
    pub fn node_log(
        &self,
        node: &str,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<u8>, u64), ControlError> {
        let path = self.log_of(node)?;
        match logs::read_from(&path, offset, max) {
            Ok(chunk) => Ok(chunk),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok((Vec::new(), 0)),
            Err(err) => Err(io(format!("read {}", path.display()))(err)),
        }
    }

    /// The last `lines` lines of a node's log, and the offset of its end (to follow from).
    pub fn node_log_tail(&self, node: &str, lines: usize) -> Result<(Vec<u8>, u64), ControlError> {
        let path = self.log_of(node)?;
        let end = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let text = match logs::tail(&path, lines) {
            Ok(lines) if lines.is_empty() => String::new(),
            Ok(lines) => lines.join("\n") + "\n",
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(io(format!("read {}", path.display()))(err)),
        };
        Ok((text.into_bytes(), end))
    }

    /// The applied fleet, if any.
    pub(crate) fn fleet(&self) -> Option<chainfleet_spec::Fleet> {
        self.read_desired()
            .manifest
            .as_ref()
            .map(|m| m.fleet.clone())
    }

    /// The desired node called `name`.
    pub(crate) fn desired_node(&self, name: &str) -> Option<DesiredNode> {
        self.read_desired()
            .nodes
            .iter()
            .find(|n| n.record.name == name)
            .cloned()
    }

    /// The shared RPC client.
    pub(crate) fn rpc(&self) -> RpcClient {
        self.inner.rpc.clone()
    }

    /// Whether a node's process runs and its last probe answered.
    pub(crate) fn member_serving(&self, name: &str) -> bool {
        let handle = {
            let live = lock(&self.inner.live);
            match live.get(name) {
                Some(l) if l.probe_error.is_none() && l.phase == Phase::Running => l.handle,
                _ => None,
            }
        };
        handle.is_some_and(|h| self.inner.runtime.observe(&h) == Liveness::Running)
    }

    /// Tell the alert engine whether each producer group has an active member.
    pub(crate) fn report_producer_groups(&self, active: &[(String, bool)], removed: &[String]) {
        for (group, has_active) in active {
            self.inner.monitor.set_group_state(group, *has_active);
        }
        for group in removed {
            self.inner.monitor.forget_group(group);
        }
    }

    pub(crate) fn set_producer_groups(&self, groups: Vec<crate::failover::GroupStatus>) {
        *lock(&self.inner.producer_groups) = groups;
    }

    /// Every producer group: active member, epoch, lease, standbys.
    pub fn producer_groups(&self) -> Vec<crate::failover::GroupStatus> {
        lock(&self.inner.producer_groups).clone()
    }

    /// Record an event and tell subscribers.
    pub(crate) fn record_event(&self, node: Option<&str>, kind: &str, message: &str) {
        match node {
            Some(node) => tracing::info!(node, kind, "{message}"),
            None => tracing::info!(kind, "{message}"),
        }
        match self.inner.store.add_event(node, kind, message) {
            Ok(event) => {
                let _ = self.inner.events.send(event);
            }
            Err(err) => tracing::warn!(error = %err, "cannot record event"),
        }
    }

    /// Run the reconcile, probe and production loops until `shutdown` fires.
    /// Nodes keep running; call [`Controller::stop_all`] to stop them.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let reconcile = {
            let this = self.clone();
            tokio::spawn(async move { this.reconcile_loop().await })
        };
        let probe = {
            let this = self.clone();
            tokio::spawn(async move { this.probe_loop().await })
        };
        let produce = {
            let this = self.clone();
            tokio::spawn(async move { this.failover_loop().await })
        };
        let _ = shutdown.wait_for(|stop| *stop).await;
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        reconcile.abort();
        probe.abort();
        produce.abort();
        // Wait for an in-flight reconcile step to finish so no start is cut in half.
        let _guard = self.inner.reconcile_lock.lock().await;
    }

    async fn reconcile_loop(&self) {
        let mut rounds: u64 = 0;
        loop {
            if let Err(err) = self.reconcile_once().await {
                tracing::warn!(error = %err, "reconcile failed");
                self.record_event(None, "reconcile-error", &err.to_string());
            }
            rounds += 1;
            if rounds.is_multiple_of(10) {
                self.rotate_logs();
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(self.inner.options.reconcile_interval) => {}
            }
        }
    }

    fn rotate_logs(&self) {
        let (max_bytes, keep, nodes) = {
            let desired = self.read_desired();
            let Some(manifest) = &desired.manifest else {
                return;
            };
            let settings = &manifest.fleet.settings;
            (
                settings.log_max_mb * 1024 * 1024,
                settings.log_keep,
                desired
                    .nodes
                    .iter()
                    .map(|n| n.spec.log_path.clone())
                    .collect::<Vec<_>>(),
            )
        };
        for path in nodes {
            if let Err(err) = logs::rotate_if_needed(&path, max_bytes, keep) {
                tracing::warn!(log = %path.display(), error = %err, "cannot rotate log");
            }
        }
    }

    /// One idempotent pass: adopt, remove, start, restart and roll.
    pub async fn reconcile_once(&self) -> Result<(), ControlError> {
        let _guard = self.inner.reconcile_lock.lock().await;
        if self
            .inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let desired = self.read_desired().nodes.clone();
        let wanted: HashSet<&str> = desired.iter().map(|n| n.record.name.as_str()).collect();
        let records = self.inner.store.nodes()?;

        // Nodes no longer in the manifest: stop and forget (data dirs stay).
        for record in records.iter().filter(|r| !wanted.contains(r.name.as_str())) {
            self.remove_node(record).await?;
        }

        let records: HashMap<String, NodeRecord> =
            records.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut outdated: Vec<&DesiredNode> = Vec::new();
        for node in &desired {
            let stored = records.get(&node.record.name);
            let mut record = match stored {
                Some(stored) => NodeRecord {
                    // Runtime fields come from the store; the rest from the plan.
                    pid: stored.pid,
                    start_ticks: stored.start_ticks,
                    launch: stored.launch.clone(),
                    restarts: stored.restarts,
                    ..node.record.clone()
                },
                None => node.record.clone(),
            };
            if stored != Some(&record) {
                self.inner.store.put_node(&record)?;
            }
            let now = Instant::now();
            let phase = self.observe_node(node, &mut record)?;
            match phase {
                Phase::New | Phase::Failed | Phase::Backoff => {
                    let due = lock(&self.inner.live)
                        .get(&node.record.name)
                        .and_then(|l| l.next_start)
                        .is_none_or(|at| at <= now);
                    if due {
                        self.start_node(node, &mut record)?;
                    }
                }
                Phase::Starting | Phase::Updating | Phase::Running => {
                    if record.launch.as_deref() != Some(node.launch_json().as_str()) {
                        outdated.push(node);
                    }
                }
                Phase::Stopping | Phase::Stopped => {}
            }
        }
        self.roll(&desired, &outdated).await
    }

    /// Restart at most one outdated node per instance, and only when every
    /// other replica of that instance is healthy.
    async fn roll(
        &self,
        desired: &[DesiredNode],
        outdated: &[&DesiredNode],
    ) -> Result<(), ControlError> {
        let mut instances_busy: HashSet<String> = HashSet::new();
        {
            let live = lock(&self.inner.live);
            for node in desired {
                let unsettled = live.get(&node.record.name).is_none_or(|l| {
                    matches!(l.phase, Phase::Starting | Phase::Updating) || !l.healthy()
                });
                if unsettled {
                    instances_busy.insert(node.record.instance.clone());
                }
            }
        }
        for node in outdated {
            if instances_busy.contains(&node.record.instance) {
                // Wait for the instance to settle; an unhealthy outdated node
                // may still be restarted so a bad config can be fixed.
                let this_unhealthy = lock(&self.inner.live)
                    .get(&node.record.name)
                    .is_some_and(|l| !l.healthy() && l.phase == Phase::Running);
                if !this_unhealthy {
                    continue;
                }
            }
            instances_busy.insert(node.record.instance.clone());
            self.record_event(
                Some(&node.record.name),
                "updating",
                "args or config changed; restarting this replica",
            );
            let handle = lock(&self.inner.live)
                .get(&node.record.name)
                .and_then(|l| l.handle);
            if let Some(handle) = handle {
                self.stop_process(
                    node.chain,
                    &node.record.name,
                    &node.endpoint,
                    handle,
                    node.stop_timeout,
                )
                .await;
            }
            let mut record = self
                .inner
                .store
                .nodes()?
                .into_iter()
                .find(|r| r.name == node.record.name)
                .unwrap_or_else(|| node.record.clone());
            record.pid = None;
            record.start_ticks = None;
            self.start_node(node, &mut record)?;
            if let Some(live) = lock(&self.inner.live).get_mut(&node.record.name) {
                if live.handle.is_some() {
                    live.phase = Phase::Updating;
                }
            }
        }
        Ok(())
    }

    /// Bring the live view of one node up to date: adopt on first sight,
    /// notice exits. Returns its phase.
    fn observe_node(
        &self,
        node: &DesiredNode,
        record: &mut NodeRecord,
    ) -> Result<Phase, ControlError> {
        let name = node.record.name.clone();
        let mut live_map = lock(&self.inner.live);
        let live = live_map.entry(name.clone()).or_insert_with(Live::new);
        if live.phase == Phase::New {
            live.restarts = record.restarts;
            let spec = record_spec(record).unwrap_or_else(|| node.spec.clone());
            if let Some(handle) = self.inner.runtime.adopt(&spec, recorded_handle(record)) {
                live.handle = Some(handle);
                live.phase = Phase::Running;
                live.started_at = Some(Instant::now());
                drop(live_map);
                let changed = record.pid != Some(handle.pid);
                record.pid = Some(handle.pid);
                record.start_ticks = Some(handle.start_ticks);
                if record.launch.is_none() {
                    record.launch = Some(node.launch_json());
                }
                self.inner.store.put_node(record)?;
                self.record_event(
                    Some(&name),
                    "adopted",
                    &format!(
                        "re-adopted running pid {}{}",
                        handle.pid,
                        if changed {
                            " (found by its data dir)"
                        } else {
                            ""
                        }
                    ),
                );
                return Ok(Phase::Running);
            }
            if record.pid.is_some() {
                record.pid = None;
                record.start_ticks = None;
                drop(live_map);
                self.inner.store.put_node(record)?;
                return Ok(Phase::New);
            }
            return Ok(Phase::New);
        }
        let Some(handle) = live.handle else {
            return Ok(live.phase);
        };
        if !matches!(
            live.phase,
            Phase::Starting | Phase::Updating | Phase::Running
        ) {
            return Ok(live.phase);
        }
        let Liveness::Exited { code, signal } = self.inner.runtime.observe(&handle) else {
            return Ok(live.phase);
        };
        // The node exited on its own: schedule a restart with back-off.
        let now = Instant::now();
        let ran_for = live
            .started_at
            .map(|s| now.duration_since(s))
            .unwrap_or_default();
        if ran_for >= STABLE_AFTER {
            live.consecutive_failures = 0;
        }
        live.consecutive_failures += 1;
        live.crash_times.push_back(now);
        while live
            .crash_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            live.crash_times.pop_front();
        }
        let backoff = backoff_for(live.consecutive_failures);
        live.handle = None;
        live.phase = Phase::Backoff;
        live.next_start = Some(now + backoff);
        live.probe = None;
        live.log_tail = logs::tail(&node.spec.log_path, LOG_TAIL_LINES).unwrap_or_default();
        let how = match (code, signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (_, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "exited".to_string(),
        };
        let looping = if live.crash_looping() {
            format!(
                " (crash-looping: {} exits in 5 minutes)",
                live.crash_times.len()
            )
        } else {
            String::new()
        };
        live.last_error = Some(format!("{how}{looping}"));
        let tail = live.log_tail.join("\n");
        record.restarts += 1;
        live.restarts = record.restarts;
        drop(live_map);
        record.pid = None;
        record.start_ticks = None;
        self.inner.store.put_node(record)?;
        self.record_event(
            Some(&name),
            "exited",
            &format!(
                "{how} after {}s{looping}; restarting in {}s. Last log lines:\n{tail}",
                ran_for.as_secs(),
                backoff.as_secs()
            ),
        );
        Ok(Phase::Backoff)
    }

    fn start_node(&self, node: &DesiredNode, record: &mut NodeRecord) -> Result<(), ControlError> {
        let name = node.record.name.clone();
        let launch = node.launch_json();
        match self.inner.runtime.start(&node.spec) {
            Ok(handle) => {
                record.pid = Some(handle.pid);
                record.start_ticks = Some(handle.start_ticks);
                record.launch = Some(launch);
                self.inner.store.put_node(record)?;
                {
                    let mut live_map = lock(&self.inner.live);
                    let live = live_map.entry(name.clone()).or_insert_with(Live::new);
                    live.handle = Some(handle);
                    live.phase = Phase::Starting;
                    live.started_at = Some(Instant::now());
                    live.next_start = None;
                    live.probe = None;
                    live.probe_error = None;
                    live.probe_ok_since_start = false;
                }
                self.record_event(
                    Some(&name),
                    "started",
                    &format!(
                        "pid {}, rpc port {}, p2p port {}",
                        handle.pid, node.record.rpc_port, node.record.p2p_port
                    ),
                );
            }
            Err(err) => {
                let message = match &err {
                    RuntimeError::BinaryNotFound { program, .. } => {
                        format!("{err}. {}", node.adapter().install_hint(program))
                    }
                    _ => err.to_string(),
                };
                let mut live_map = lock(&self.inner.live);
                let live = live_map.entry(name.clone()).or_insert_with(Live::new);
                live.consecutive_failures += 1;
                let backoff = backoff_for(live.consecutive_failures);
                live.phase = Phase::Failed;
                live.next_start = Some(Instant::now() + backoff);
                let repeated = live.last_error.as_deref() == Some(message.as_str());
                live.last_error = Some(message.clone());
                drop(live_map);
                if !repeated {
                    self.record_event(Some(&name), "start-failed", &message);
                }
            }
        }
        Ok(())
    }

    /// The process of a stored node: the one this control plane tracks, or
    /// one left by an earlier control plane.
    fn current_handle(&self, record: &NodeRecord) -> Option<ProcessHandle> {
        let live = lock(&self.inner.live)
            .get(&record.name)
            .and_then(|l| l.handle);
        live.or_else(|| {
            let spec = record_spec(record)?;
            self.inner.runtime.adopt(&spec, recorded_handle(record))
        })
    }

    async fn remove_node(&self, record: &NodeRecord) -> Result<(), ControlError> {
        if let Some(handle) = self.current_handle(record) {
            match chain_of(&record.chain) {
                Some(chain) => {
                    let endpoint = record_endpoint(chain, record);
                    self.stop_process(chain, &record.name, &endpoint, handle, REMOVED_STOP_TIMEOUT)
                        .await
                }
                None => {
                    let _ = self.inner.runtime.kill(&record.name, &handle);
                }
            }
        }
        self.inner.store.delete_node(&record.name)?;
        lock(&self.inner.live).remove(&record.name);
        self.record_event(
            Some(&record.name),
            "removed",
            &format!(
                "no longer in the manifest; stopped (data kept in {})",
                record.data_dir
            ),
        );
        Ok(())
    }

    /// Stop one process the family's way, then SIGKILL after `timeout`.
    async fn stop_process(
        &self,
        chain: Chain,
        name: &str,
        endpoint: &chainfleet_chains::Endpoint,
        handle: ProcessHandle,
        timeout: Duration,
    ) {
        if let Some(live) = lock(&self.inner.live).get_mut(name) {
            live.phase = Phase::Stopping;
        }
        let adapter = Adapter::for_chain(chain);
        let asked = match adapter.stop_method() {
            StopMethod::Rpc => match adapter.request_stop(&self.inner.rpc, endpoint).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::debug!(node = name, error = %err, "RPC stop failed; sending SIGTERM");
                    false
                }
            },
            StopMethod::Sigterm => false,
        };
        if !asked {
            if let Err(err) = self.inner.runtime.terminate(name, &handle) {
                tracing::warn!(node = name, error = %err, "cannot send SIGTERM");
            }
        }
        let deadline = Instant::now() + timeout;
        let mut exited = false;
        while Instant::now() < deadline {
            if self.inner.runtime.observe(&handle) != Liveness::Running {
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !exited {
            self.record_event(
                Some(name),
                "killed",
                &format!("did not stop within {}s; sent SIGKILL", timeout.as_secs()),
            );
            let _ = self.inner.runtime.kill(name, &handle);
            for _ in 0..50 {
                if self.inner.runtime.observe(&handle) != Liveness::Running {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if let Some(live) = lock(&self.inner.live).get_mut(name) {
            live.handle = None;
            live.phase = Phase::Stopped;
            live.probe = None;
        }
    }

    /// Stop every node cleanly (in parallel) and record that they stopped.
    pub async fn stop_all(&self) -> Result<usize, ControlError> {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _guard = self.inner.reconcile_lock.lock().await;
        let desired = self.read_desired().nodes.clone();
        let mut tasks = tokio::task::JoinSet::new();
        let mut records = self.inner.store.nodes()?;
        for record in &mut records {
            let Some(handle) = self.current_handle(record) else {
                continue;
            };
            let Some(chain) = chain_of(&record.chain) else {
                continue;
            };
            let (endpoint, timeout) = desired
                .iter()
                .find(|n| n.record.name == record.name)
                .map(|n| (n.endpoint.clone(), n.stop_timeout))
                .unwrap_or_else(|| (record_endpoint(chain, record), REMOVED_STOP_TIMEOUT));
            let this = self.clone();
            let name = record.name.clone();
            self.record_event(
                Some(&name),
                "stopping",
                &format!("stopping pid {}", handle.pid),
            );
            tasks.spawn(async move {
                this.stop_process(chain, &name, &endpoint, handle, timeout)
                    .await;
                name
            });
        }
        let mut stopped = 0;
        while let Some(done) = tasks.join_next().await {
            if let Ok(name) = done {
                stopped += 1;
                if let Some(record) = records.iter_mut().find(|r| r.name == name) {
                    record.pid = None;
                    record.start_ticks = None;
                    self.inner.store.put_node(record)?;
                }
                self.record_event(Some(&name), "stopped", "stopped cleanly");
            }
        }
        Ok(stopped)
    }

    async fn probe_loop(&self) {
        loop {
            let interval = self
                .read_desired()
                .manifest
                .as_ref()
                .map(|m| m.fleet.settings.probe_interval.get())
                .unwrap_or(Duration::from_secs(2));
            let started = Instant::now();
            self.probe_round().await;
            tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
        }
    }

    /// Probe every running node once, then publish a new snapshot.
    pub async fn probe_round(&self) {
        let round_started = Instant::now();
        let desired = self.read_desired().nodes.clone();
        let fleet = self
            .read_desired()
            .manifest
            .as_ref()
            .map(|m| m.fleet.clone());
        // A probe may take at most one probe interval: a hung (SIGSTOPped)
        // node is down within two intervals, and rounds keep their pace.
        let timeout = fleet
            .as_ref()
            .map(|f| f.settings.probe_interval.get())
            .unwrap_or(Duration::from_secs(2))
            .max(Duration::from_millis(500));
        let mut tasks = tokio::task::JoinSet::new();
        {
            let live = lock(&self.inner.live);
            for node in &desired {
                let running = live.get(&node.record.name).is_some_and(|l| {
                    l.handle.is_some()
                        && matches!(l.phase, Phase::Starting | Phase::Updating | Phase::Running)
                });
                if !running {
                    continue;
                }
                let rpc = self.inner.rpc.clone();
                let adapter = node.adapter();
                let endpoint = node.endpoint.clone();
                let name = node.record.name.clone();
                tasks.spawn(async move {
                    let started = Instant::now();
                    let result =
                        match tokio::time::timeout(timeout, adapter.probe(&rpc, &endpoint)).await {
                            Ok(result) => result.map_err(|err| err.to_string()),
                            Err(_) => Err(format!("probe timed out after {timeout:?}")),
                        };
                    (name, result, started.elapsed())
                });
            }
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        let mut became_healthy = Vec::new();
        let mut probe_seconds: HashMap<String, f64> = HashMap::new();
        {
            let mut live = lock(&self.inner.live);
            for (name, result, took) in results {
                probe_seconds.insert(name.clone(), took.as_secs_f64());
                if result.is_err() {
                    self.inner.monitor.probe_failed();
                }
                let Some(entry) = live.get_mut(&name) else {
                    continue;
                };
                match result {
                    Ok(status) => {
                        entry.probe = Some(status);
                        entry.probe_error = None;
                        entry.probe_ok_since_start = true;
                        if matches!(entry.phase, Phase::Starting | Phase::Updating)
                            && entry.healthy()
                        {
                            became_healthy.push((name.clone(), entry.phase));
                            entry.phase = Phase::Running;
                            entry.last_error = None;
                            entry.log_tail.clear();
                        }
                    }
                    Err(err) => entry.probe_error = Some(err.to_string()),
                }
            }
        }
        for (name, phase) in became_healthy {
            let what = if phase == Phase::Updating {
                "healthy again after update"
            } else {
                "healthy"
            };
            self.record_event(Some(&name), "healthy", what);
        }
        let observed: Vec<crate::alerts::Observed> = {
            let live = lock(&self.inner.live);
            desired
                .iter()
                .map(|node| {
                    let entry = live.get(&node.record.name);
                    crate::alerts::Observed {
                        state: entry.map(state_of).unwrap_or("starting"),
                        probe: entry
                            .filter(|l| l.probe_error.is_none())
                            .and_then(|l| l.probe.clone()),
                    }
                })
                .collect()
        };
        let report = self
            .inner
            .monitor
            .round(
                &self.inner.rpc,
                fleet.as_ref(),
                &desired,
                observed,
                timeout,
                round_started.elapsed(),
            )
            .await;
        for (node, kind, message) in &report.events {
            self.record_event(node.as_deref(), kind, message);
        }
        self.publish(&desired, &report, &probe_seconds);
    }

    fn publish(
        &self,
        desired: &[DesiredNode],
        report: &crate::alerts::RoundReport,
        probe_seconds: &HashMap<String, f64>,
    ) {
        let now = now_ms();
        let now_secs = (now / 1000).max(0) as u64;
        let live = lock(&self.inner.live);
        let mut best_height: HashMap<usize, u64> = HashMap::new();
        for node in desired {
            if let Some(height) = live
                .get(&node.record.name)
                .filter(|l| l.probe_error.is_none())
                .and_then(|l| l.probe.as_ref())
                .map(|p| p.height)
            {
                let best = best_height.entry(node.network_group).or_insert(0);
                *best = (*best).max(height);
            }
        }
        let nodes: Vec<NodeStatus> = desired
            .iter()
            .enumerate()
            .map(|(index, node)| {
                let health = report.health.get(index);
                let entry = live.get(&node.record.name);
                let probe = entry.and_then(|l| l.probe.as_ref());
                let state = entry.map(state_of).unwrap_or("starting");
                let pid = entry.and_then(|l| l.handle).map(|h| h.pid);
                NodeStatus {
                    name: node.record.name.clone(),
                    instance: node.record.instance.clone(),
                    replica: node.record.replica,
                    chain: node.chain.as_str().into(),
                    network: format!("{:?}", node.network).to_lowercase(),
                    role: format!("{:?}", node.role).to_lowercase(),
                    state: state.into(),
                    height: probe.map(|p| p.height),
                    best_hash: probe.map(|p| p.best_hash.clone()),
                    // Behind the group's quorum height (robust to one wild reference).
                    lag: health.and_then(|h| h.lag).or_else(|| {
                        probe.and_then(|p| {
                            best_height
                                .get(&node.network_group)
                                .map(|best| best.saturating_sub(p.height))
                        })
                    }),
                    peers: probe.map(|p| p.peers),
                    head_age_seconds: probe
                        .and_then(|p| p.head_time)
                        .map(|t| now_secs.saturating_sub(t)),
                    syncing: probe.map(|p| p.syncing),
                    pid,
                    uptime_seconds: entry
                        .and_then(|l| l.handle)
                        .and_then(|h| procfs::uptime_seconds(h.start_ticks)),
                    restarts: entry.map(|l| l.restarts).unwrap_or(0),
                    client_version: probe.map(|p| p.client_version.clone()),
                    rpc_port: node.record.rpc_port,
                    p2p_port: node.record.p2p_port,
                    last_error: entry.and_then(|l| l.last_error.clone().or(l.probe_error.clone())),
                    log_tail: entry.map(|l| l.log_tail.clone()).unwrap_or_default(),
                    updated_ms: now,
                    health: health.map(|h| h.state.as_str()).unwrap_or("pending").into(),
                    health_reason: health.and_then(|h| h.reason.clone()),
                    stale_seconds: health.and_then(|h| h.stale_seconds),
                    block_interval_seconds: health.and_then(|h| h.block_interval_seconds),
                    forked: health.is_some_and(|h| h.forked),
                    disk_used_percent: health.and_then(|h| h.disk_used_percent),
                    probe_seconds: probe_seconds.get(&node.record.name).copied(),
                }
            })
            .collect();
        drop(live);
        let saved = nodes.iter().map(|n| {
            (
                n.name.as_str(),
                serde_json::to_string(n).unwrap_or_default(),
            )
        });
        if let Err(err) = self.inner.store.save_statuses(saved) {
            tracing::warn!(error = %err, "cannot save statuses");
        }
        let upstreams = desired
            .iter()
            .zip(&nodes)
            .map(|(node, status)| Upstream {
                status: status.clone(),
                chain: node.chain,
                endpoint: node.endpoint.clone(),
            })
            .collect();
        self.inner
            .upstreams
            .send_replace(Arc::new(UpstreamSnapshot {
                generated_ms: now,
                upstreams,
            }));
        self.inner.snapshot.send_replace(Arc::new(FleetSnapshot {
            fleet: self.fleet_name(),
            generated_ms: now,
            nodes,
            alerts: report.alerts.clone(),
            control: report.stats.clone(),
        }));
    }
}

/// Upstreams as last saved in a state dir, for a gateway running apart from
/// its control plane. Statuses are those of the control plane's last probe round.
pub fn read_upstreams(state_dir: &Path) -> Result<UpstreamSnapshot, ControlError> {
    upstreams_in(&Store::open(&state_dir.join("state.db"))?)
}

/// The upstreams recorded in an open store (for readers that poll it).
pub fn upstreams_in(store: &Store) -> Result<UpstreamSnapshot, ControlError> {
    let statuses: HashMap<String, NodeStatus> = store
        .statuses()?
        .into_iter()
        .filter_map(|(name, json)| Some((name, serde_json::from_str(&json).ok()?)))
        .collect();
    let mut generated_ms = 0;
    let upstreams = store
        .nodes()?
        .into_iter()
        .filter_map(|record| {
            let chain = chain_of(&record.chain)?;
            let status = statuses.get(&record.name)?.clone();
            generated_ms = generated_ms.max(status.updated_ms);
            let endpoint = record_endpoint(chain, &record);
            Some(Upstream {
                status,
                chain,
                endpoint,
            })
        })
        .collect();
    Ok(UpstreamSnapshot {
        generated_ms,
        upstreams,
    })
}

/// The status word of a node.
fn state_of(live: &Live) -> &'static str {
    match live.phase {
        Phase::New => "starting",
        Phase::Failed => "failed",
        Phase::Backoff if live.crash_looping() => "crash-looping",
        Phase::Backoff => "restarting",
        Phase::Stopping => "stopping",
        Phase::Stopped => "stopped",
        Phase::Starting | Phase::Updating | Phase::Running => {
            if live.probe_error.is_some() && live.probe_ok_since_start {
                "unreachable"
            } else if live.phase == Phase::Updating {
                "updating"
            } else {
                match &live.probe {
                    None => "starting",
                    Some(p) if p.syncing => "syncing",
                    Some(_) => "healthy",
                }
            }
        }
    }
}

fn backoff_for(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(6);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

fn chain_of(name: &str) -> Option<Chain> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Where a stored node's RPC answers, with its credentials.
fn record_endpoint(chain: Chain, record: &NodeRecord) -> chainfleet_chains::Endpoint {
    Adapter::for_chain(chain).local_endpoint(
        record.rpc_port,
        &record.rpc_user,
        &record.rpc_password,
    )
}

/// The process a record says runs, if it says one does.
fn recorded_handle(record: &NodeRecord) -> Option<ProcessHandle> {
    record
        .pid
        .zip(record.start_ticks)
        .map(|(pid, start_ticks)| ProcessHandle { pid, start_ticks })
}

/// The runtime spec a stored record was started with, for adoption and stopping.
fn record_spec(record: &NodeRecord) -> Option<NodeSpec> {
    let launch: chainfleet_chains::LaunchSpec =
        serde_json::from_str(record.launch.as_deref()?).ok()?;
    Some(NodeSpec {
        name: record.name.clone(),
        launch,
        data_dir: PathBuf::from(&record.data_dir),
        log_path: PathBuf::new(),
        ports: Vec::new(),
        run_as: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let waits: Vec<u64> = (1..=9).map(|n| backoff_for(n).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn state_words_follow_phase_and_probe() {
        let mut live = Live::new();
        assert_eq!(state_of(&live), "starting");
        live.phase = Phase::Running;
        live.probe = Some(ProbeStatus {
            syncing: true,
            ..ProbeStatus::default()
        });
        assert_eq!(state_of(&live), "syncing");
        live.probe = Some(ProbeStatus::default());
        assert_eq!(state_of(&live), "healthy");
        live.probe_ok_since_start = true;
        live.probe_error = Some("down".into());
        assert_eq!(state_of(&live), "unreachable");
        live.phase = Phase::Backoff;
        assert_eq!(state_of(&live), "restarting");
        let now = Instant::now();
        live.crash_times = [now, now, now].into_iter().collect();
        assert_eq!(state_of(&live), "crash-looping");
    }
}
