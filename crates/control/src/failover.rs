//! Producer groups: exactly one active block producer per group, fenced by
//! a lease with an epoch that only increases.
//!
//! The holder renews at TTL/3 and stops producing on its own when TTL/2 has
//! passed since the last renewal it sent, so it steps down before its lease
//! can expire anywhere else. Before each block it advances the group's
//! watermark (height, epoch) in the lease store, which only the current
//! holder can do; it never produces at or below another epoch's watermark.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_spec::failover::{LeaseBackend, ProducerGroup};
use chainfleet_spec::Fleet;
use serde::Serialize;

use crate::lease::{watermark_allows, GroupRecord, HeldLease, LeaseStore};
use crate::store::now_ms;
use crate::{ControlError, Controller};

/// How often every group is looked at.
const TICK: Duration = Duration::from_millis(100);
/// How long a `promote` request keeps other members from taking over.
const PREFERENCE_WINDOW_MS: i64 = 10_000;

/// Whether a member in this health state may become the producer (its lag
/// is checked apart). When the producer dies every standby's head stops, so
/// "stalled" must not disqualify them; syncing, forked and down members may not.
fn may_take_over(state: &str) -> bool {
    matches!(state, "healthy" | "stalled" | "lagging")
}

/// The best height a group knows: its members' and a fresh watermark's. A
/// stale mark of an earlier epoch whose blocks no member has no longer holds
/// the group back (see `watermark_allows`).
fn best_height(plan: &GroupPlan, record: &GroupRecord, nodes: &[crate::NodeStatus]) -> u64 {
    let members = nodes
        .iter()
        .filter(|n| plan.members.contains(&n.name))
        .filter_map(|n| n.height);
    let fresh_after = now_ms() - plan.settings.lease_ttl.get().as_millis() as i64;
    let watermark = record
        .watermark
        .filter(|w| w.time_ms >= fresh_after)
        .map(|w| w.height);
    members.chain(watermark).max().unwrap_or(0)
}

/// A producer group as the manifest declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// Group name.
    pub name: String,
    /// Lease settings.
    pub settings: ProducerGroup,
    /// Node names of its members that this control plane runs.
    pub members: Vec<String>,
}

/// Every producer group of a fleet. A producer instance on a local network
/// that names no group forms its own, with default settings.
pub fn groups(fleet: &Fleet) -> Vec<GroupPlan> {
    let mut out: BTreeMap<String, GroupPlan> = BTreeMap::new();
    for instance in &fleet.instances {
        if instance.role != chainfleet_spec::Role::Producer || !instance.network.is_local() {
            continue;
        }
        let name = instance
            .producer_group
            .clone()
            .unwrap_or_else(|| instance.name.clone());
        let settings = fleet
            .producer_groups
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let group = out.entry(name.clone()).or_insert_with(|| GroupPlan {
            name,
            settings,
            members: Vec::new(),
        });
        group
            .members
            .extend((0..instance.replicas).map(|r| format!("{}-{r}", instance.name)));
    }
    out.into_values().collect()
}

/// One member as shown by `chainfleet producers`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberStatus {
    /// Node name.
    pub name: String,
    /// Its state word from status.
    pub state: String,
    /// Its height.
    pub height: Option<u64>,
    /// Blocks behind the best known height of the group.
    pub lag: Option<u64>,
    /// Whether it is the active producer.
    pub active: bool,
}

/// One group as shown by `chainfleet producers` and `/v1/producers`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStatus {
    /// Group name.
    pub name: String,
    /// `embedded` or `etcd`.
    pub backend: String,
    /// Current epoch.
    pub epoch: u64,
    /// Lease holder (`FLEET/NODE`), if any.
    pub active: Option<String>,
    /// Milliseconds until the lease expires.
    pub lease_expires_in_ms: Option<i64>,
    /// Whether production is fenced off.
    pub fenced: bool,
    /// Last produced height and epoch.
    pub watermark: Option<crate::lease::Watermark>,
    /// Lease TTL in milliseconds.
    pub lease_ttl_ms: u64,
    /// Most lag a standby may have to take over.
    pub max_lag: u64,
    /// Members run by this control plane.
    pub members: Vec<MemberStatus>,
    /// Blocks this control plane produced for the group.
    pub blocks_produced: u64,
    /// Time from the previous epoch's last block to this epoch's first, in ms.
    pub last_takeover_ms: Option<i64>,
    /// Longest time between two blocks of the group seen here, in ms.
    pub max_gap_ms: Option<i64>,
    /// Last problem, if any.
    pub last_error: Option<String>,
}

struct Held {
    lease: HeldLease,
    member: String,
    /// When the last successful renewal was sent; validity runs from here.
    renewed_at: Instant,
    last_renew_sent: Instant,
    first_block_done: bool,
}

struct GroupRuntime {
    plan: GroupPlan,
    store: LeaseStore,
    held: Option<Held>,
    record: GroupRecord,
    next_block: Instant,
    last_read: Option<Instant>,
    blocks_produced: u64,
    last_takeover_ms: Option<i64>,
    last_block_ms: Option<i64>,
    max_gap_ms: Option<i64>,
    last_error: Option<String>,
    /// A production attempt in flight.
    producing: Option<tokio::task::JoinHandle<Result<Option<Produced>, ControlError>>>,
}

impl Drop for GroupRuntime {
    fn drop(&mut self) {
        // A group task that is stopped must not leave a production attempt running.
        if let Some(attempt) = self.producing.take() {
            attempt.abort();
        }
    }
}

/// Statuses of every group, written by the group tasks.
type SharedStatuses = Arc<std::sync::Mutex<BTreeMap<String, GroupStatus>>>;

fn backend_name(settings: &ProducerGroup) -> &'static str {
    match settings.backend {
        LeaseBackend::Embedded => "embedded",
        LeaseBackend::Etcd { .. } => "etcd",
    }
}

impl GroupRuntime {
    fn new(plan: GroupPlan, store: LeaseStore) -> Self {
        GroupRuntime {
            plan,
            store,
            held: None,
            record: GroupRecord::default(),
            next_block: Instant::now(),
            last_read: None,
            blocks_produced: 0,
            last_takeover_ms: None,
            last_block_ms: None,
            max_gap_ms: None,
            last_error: None,
            producing: None,
        }
    }

    /// Forget the held lease and stop any production attempt at once.
    fn drop_lease(&mut self) {
        self.held = None;
        if let Some(attempt) = self.producing.take() {
            attempt.abort();
        }
    }

    fn ttl(&self) -> Duration {
        self.plan.settings.lease_ttl.get()
    }

    fn holder_id(fleet: &str, member: &str) -> String {
        format!("{fleet}/{member}")
    }
}

/// One block a holder asked its member to produce.
struct Produced {
    height: u64,
    epoch: u64,
    hash: String,
}

/// Everything one production attempt needs, taken when it starts.
struct ProductionAttempt {
    group: String,
    holder: String,
    member: String,
    lease: HeldLease,
    /// Validity of the lease as of the attempt's start (TTL/2 after the last renewal).
    deadline: Instant,
    stale_before_ms: i64,
    watermark: Option<crate::lease::Watermark>,
}

impl ProductionAttempt {
    /// Check the height, advance the watermark, then produce; `None` when the
    /// lease ran out before the block could be asked for.
    async fn run(
        self,
        rpc: &chainfleet_chains::RpcClient,
        store: &LeaseStore,
        node: &crate::plan::DesiredNode,
        production: &chainfleet_spec::Production,
    ) -> Result<Option<Produced>, ControlError> {
        let member = &self.member;
        let adapter = node.adapter();
        let remaining = || self.deadline.saturating_duration_since(Instant::now());
        // Fresh height from the node itself, not the last probe round.
        let status = tokio::time::timeout(remaining(), adapter.probe(rpc, &node.endpoint))
            .await
            .map_err(|_| {
                ControlError::Invalid(format!("{member} did not answer its probe in time"))
            })?
            .map_err(|source| ControlError::Chain {
                node: member.clone(),
                source,
            })?;
        let height = status.height + 1;
        // A mark older than one TTL whose block never arrived was left by a
        // producer that died between recording and producing: reclaim it.
        // Its holder could only ask for that block within TTL/2 of the mark.
        if let Some(watermark) = self.watermark {
            if !watermark_allows(watermark, height, self.lease.epoch, self.stale_before_ms) {
                return Err(ControlError::Invalid(format!(
                    "refusing to produce height {height}: epoch {} already marked height {} (waiting for {member} to sync)",
                    watermark.epoch, watermark.height
                )));
            }
        }
        if !store
            .advance_watermark(
                &self.group,
                &self.holder,
                self.lease,
                height,
                self.stale_before_ms,
            )
            .await?
        {
            return Err(ControlError::Invalid(format!(
                "the lease store refused watermark {height} for epoch {}",
                self.lease.epoch
            )));
        }
        // Re-check the lease deadline after the awaits: never ask for a block late.
        if remaining().is_zero() {
            return Ok(None);
        }
        // Once asked, waiting longer for the answer produces nothing more;
        // a slow first block (monerod's RandomX start) is not a failure.
        let answer_timeout = production.block_interval.get().max(Duration::from_secs(10));
        let produced = tokio::time::timeout(
            answer_timeout,
            adapter.produce_tagged(
                rpc,
                &node.endpoint,
                production.reward_address.as_deref(),
                self.lease.epoch,
            ),
        )
        .await
        .map_err(|_| {
            ControlError::Invalid(format!(
                "{member} did not produce within {answer_timeout:?}"
            ))
        })?
        .map_err(|source| ControlError::Chain {
            node: member.clone(),
            source,
        })?;
        Ok(Some(Produced {
            height,
            epoch: self.lease.epoch,
            hash: produced.hash,
        }))
    }
}

impl Controller {
    /// Run every producer group, each in its own task so that a slow lease
    /// store or node of one group never delays another's renewals.
    pub(crate) async fn failover_loop(&self) {
        let statuses: SharedStatuses = Arc::default();
        let mut tasks: BTreeMap<String, (GroupPlan, tokio::task::JoinHandle<()>)> = BTreeMap::new();
        loop {
            if let Some(fleet) = self.fleet() {
                let plans = groups(&fleet);
                let mut stopped = Vec::new();
                tasks.retain(|name, (plan, handle)| {
                    let keep = plans.contains(plan);
                    if !keep {
                        handle.abort();
                        stopped.push(name.clone());
                    }
                    keep
                });
                let gone: Vec<String> = stopped
                    .into_iter()
                    .filter(|name| !plans.iter().any(|p| &p.name == name))
                    .collect();
                {
                    let mut map = statuses.lock().unwrap_or_else(|p| p.into_inner());
                    for name in &gone {
                        map.remove(name);
                    }
                }
                self.report_producer_groups(&[], &gone);
                for plan in plans {
                    if tasks.contains_key(&plan.name) {
                        continue;
                    }
                    let store = match &plan.settings.backend {
                        LeaseBackend::Embedded => LeaseStore::embedded(self.state_dir()),
                        LeaseBackend::Etcd { endpoints, prefix } => {
                            LeaseStore::etcd(endpoints, prefix)
                        }
                    };
                    match store {
                        Ok(store) => {
                            let this = self.clone();
                            let shared = statuses.clone();
                            let runtime = GroupRuntime::new(plan.clone(), store);
                            let handle =
                                tokio::spawn(async move { this.run_group(runtime, shared).await });
                            tasks.insert(plan.name.clone(), (plan, handle));
                        }
                        Err(err) => {
                            tracing::warn!(group = %plan.name, error = %err, "cannot open lease store")
                        }
                    }
                }
            }
            let all: Vec<GroupStatus> = statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            // A fenced group has no active member on purpose: no alert for it.
            let active: Vec<(String, bool)> = all
                .iter()
                .map(|g| (g.name.clone(), g.active.is_some() || g.fenced))
                .collect();
            self.report_producer_groups(&active, &[]);
            self.set_producer_groups(all);
            tokio::time::sleep(TICK).await;
        }
    }

    /// One group's loop: lease, production, and its published status.
    async fn run_group(&self, mut group: GroupRuntime, statuses: SharedStatuses) {
        loop {
            match self.step_group(&mut group).await {
                Ok(()) => group.last_error = None,
                Err(err) => {
                    let message = err.to_string();
                    if group.last_error.as_deref() != Some(message.as_str()) {
                        self.record_event(
                            None,
                            "producer-error",
                            &format!("group {}: {message}", group.plan.name),
                        );
                    }
                    group.last_error = Some(message);
                }
            }
            let status = self.group_status(&group);
            statuses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(group.plan.name.clone(), status);
            tokio::time::sleep(TICK).await;
        }
    }

    /// Record that `member` stopped producing for `group`, and why.
    fn record_step_down(&self, group: &GroupRuntime, member: &str, why: &str) {
        self.record_event(
            Some(member),
            "step-down",
            &format!("group {}: {why}", group.plan.name),
        );
    }

    async fn step_group(&self, group: &mut GroupRuntime) -> Result<(), ControlError> {
        let ttl = group.ttl();
        let fleet_name = self.fleet_name();
        let now = Instant::now();
        if let Some(held) = &group.held {
            if now.duration_since(held.renewed_at) >= ttl / 2 {
                let member = held.member.clone();
                group.drop_lease();
                self.record_step_down(
                    group,
                    &member,
                    &format!(
                        "no lease renewal for {} ms (TTL/2); stopped producing",
                        ttl.as_millis() / 2
                    ),
                );
                return Ok(());
            }
        }
        // The holder reads the record at its renewal cadence; others every tick.
        let read_due = group.held.is_none()
            || group
                .last_read
                .is_none_or(|at| now.duration_since(at) >= ttl / 3);
        if read_due {
            group.record = group.store.read(&group.plan.name).await?;
            group.last_read = Some(now);
        }
        match group.held.as_ref().map(|h| (h.lease, h.member.clone())) {
            Some((lease, member)) => {
                let holder = GroupRuntime::holder_id(&fleet_name, &member);
                let handover = group.record.preferred.as_ref().filter(|(m, at)| {
                    *m != holder && *m != member && now_ms() - at < PREFERENCE_WINDOW_MS
                });
                let reason = if group.record.fenced {
                    Some("the group is fenced".to_string())
                } else if let Some((to, _)) = handover {
                    Some(format!("handing over to {to}"))
                } else if !self.member_serving(&member) {
                    Some("the active member is down".to_string())
                } else {
                    None
                };
                if let Some(reason) = reason {
                    group.drop_lease();
                    group
                        .store
                        .release(&group.plan.name, &holder, lease)
                        .await?;
                    self.record_step_down(
                        group,
                        &member,
                        &format!("epoch {} ends: {reason}", lease.epoch),
                    );
                    return Ok(());
                }
                self.renew_if_due(group, &holder).await?;
                self.collect_production(group).await?;
                self.start_production_if_due(group);
                Ok(())
            }
            None => self.try_take_over(group, &fleet_name).await,
        }
    }

    async fn renew_if_due(
        &self,
        group: &mut GroupRuntime,
        holder: &str,
    ) -> Result<(), ControlError> {
        let ttl = group.ttl();
        let Some(held) = &mut group.held else {
            return Ok(());
        };
        let sent = Instant::now();
        if sent.duration_since(held.last_renew_sent) < ttl / 3 {
            return Ok(());
        }
        held.last_renew_sent = sent;
        let lease = held.lease;
        match group
            .store
            .renew(&group.plan.name, holder, lease, ttl)
            .await
        {
            Ok(true) => {
                if let Some(held) = &mut group.held {
                    held.renewed_at = sent;
                }
                Ok(())
            }
            Ok(false) => {
                let member = held.member.clone();
                group.drop_lease();
                self.record_step_down(
                    group,
                    &member,
                    &format!("lease of epoch {} was lost", lease.epoch),
                );
                Ok(())
            }
            // A failed renewal is not a loss yet: the TTL/2 rule stops production in time.
            Err(err) => Err(err),
        }
    }

    async fn try_take_over(
        &self,
        group: &mut GroupRuntime,
        fleet_name: &str,
    ) -> Result<(), ControlError> {
        if group.record.fenced || group.record.holder.is_some() {
            return Ok(());
        }
        let snapshot = self.snapshot();
        let best = best_height(&group.plan, &group.record, &snapshot.nodes);
        let max_lag = group.plan.settings.max_lag;
        let mut candidates: Vec<(&str, u64)> = snapshot
            .nodes
            .iter()
            .filter(|n| group.plan.members.contains(&n.name))
            .filter(|n| may_take_over(&n.state) && self.member_serving(&n.name))
            .filter_map(|n| n.height.map(|h| (n.name.as_str(), h)))
            .filter(|(_, h)| best.saturating_sub(*h) <= max_lag)
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let preferred = group
            .record
            .preferred
            .as_ref()
            .filter(|(_, at)| now_ms() - at < PREFERENCE_WINDOW_MS)
            .map(|(m, _)| m.clone());
        let choice = match &preferred {
            Some(wanted) => candidates
                .iter()
                .find(|(name, _)| {
                    GroupRuntime::holder_id(fleet_name, name) == *wanted || name == wanted
                })
                .copied(),
            None => candidates.first().copied(),
        };
        let Some((member, _)) = choice else {
            return Ok(());
        };
        let member = member.to_string();
        let holder = GroupRuntime::holder_id(fleet_name, &member);
        let sent = Instant::now();
        let Some(lease) = group
            .store
            .acquire(&group.plan.name, &holder, group.ttl())
            .await?
        else {
            return Ok(());
        };
        group.held = Some(Held {
            lease,
            member: member.clone(),
            renewed_at: sent,
            last_renew_sent: sent,
            first_block_done: false,
        });
        group.next_block = Instant::now();
        group.record.holder = Some(holder);
        group.record.epoch = lease.epoch;
        self.record_event(
            Some(&member),
            "epoch",
            &format!(
                "group {}: epoch {} begins; {member} is the active producer",
                group.plan.name, lease.epoch
            ),
        );
        Ok(())
    }

    /// Start producing a block in the background when one is due, so lease
    /// renewals never wait behind a slow node.
    fn start_production_if_due(&self, group: &mut GroupRuntime) {
        let now = Instant::now();
        if group.producing.is_some() || now < group.next_block {
            return;
        }
        let Some((lease, member, renewed_at)) = group
            .held
            .as_ref()
            .map(|h| (h.lease, h.member.clone(), h.renewed_at))
        else {
            return;
        };
        let Some(node) = self.desired_node(&member) else {
            return;
        };
        let Some(production) = node.production.clone() else {
            return;
        };
        group.next_block = now + production.block_interval.get();
        let attempt = ProductionAttempt {
            group: group.plan.name.clone(),
            holder: GroupRuntime::holder_id(&self.fleet_name(), &member),
            member,
            lease,
            deadline: renewed_at + group.ttl() / 2,
            stale_before_ms: now_ms() - group.ttl().as_millis() as i64,
            watermark: group.record.watermark,
        };
        let rpc = self.rpc();
        let store = group.store.clone();
        group.producing = Some(tokio::spawn(async move {
            attempt.run(&rpc, &store, &node, &production).await
        }));
    }

    /// Apply the result of a finished production attempt.
    async fn collect_production(&self, group: &mut GroupRuntime) -> Result<(), ControlError> {
        let finished = group.producing.as_ref().is_some_and(|h| h.is_finished());
        if !finished {
            return Ok(());
        }
        let Some(handle) = group.producing.take() else {
            return Ok(());
        };
        let outcome = match handle.await {
            Ok(result) => result,
            Err(err) => Err(ControlError::Invalid(format!(
                "block production task failed: {err}"
            ))),
        };
        let produced = match outcome {
            Ok(Some(produced)) => produced,
            Ok(None) => return Ok(()),
            Err(err) => {
                // The store may know more (a new holder, a fence): read it next tick.
                group.last_read = None;
                return Err(err);
            }
        };
        let now_ms = now_ms();
        // The group's previous block: ours, or the last one of an earlier epoch.
        let previous_ms = group
            .record
            .watermark
            .filter(|w| w.epoch < produced.epoch)
            .map(|w| w.time_ms)
            .filter(|t| *t > 0);
        if let Some(previous) = group.last_block_ms.or(previous_ms) {
            let gap = now_ms - previous;
            group.max_gap_ms = Some(group.max_gap_ms.map_or(gap, |g| g.max(gap)));
        }
        group.last_block_ms = Some(now_ms);
        group.record.watermark = Some(crate::lease::Watermark {
            height: produced.height,
            epoch: produced.epoch,
            time_ms: now_ms,
        });
        group.blocks_produced += 1;
        let Some(held) = group
            .held
            .as_mut()
            .filter(|h| h.lease.epoch == produced.epoch)
        else {
            return Ok(());
        };
        if !held.first_block_done {
            held.first_block_done = true;
            let member = held.member.clone();
            let takeover = previous_ms.map(|p| now_ms - p);
            if takeover.is_some() {
                group.last_takeover_ms = takeover;
            }
            self.record_event(
                Some(&member),
                "first-block",
                &format!(
                    "group {}: epoch {} produced height {} ({}){}",
                    group.plan.name,
                    produced.epoch,
                    produced.height,
                    produced.hash,
                    takeover
                        .map(|t| format!(", {t} ms after the previous block of the group"))
                        .unwrap_or_default()
                ),
            );
        }
        Ok(())
    }

    /// The status of one group as `chainfleet producers` shows it.
    fn group_status(&self, group: &GroupRuntime) -> GroupStatus {
        let snapshot = self.snapshot();
        let best = best_height(&group.plan, &group.record, &snapshot.nodes);
        let active_member = group.held.as_ref().map(|h| h.member.as_str());
        GroupStatus {
            name: group.plan.name.clone(),
            backend: backend_name(&group.plan.settings).into(),
            epoch: group.record.epoch,
            active: group.record.holder.clone(),
            lease_expires_in_ms: group.record.expires_in_ms,
            fenced: group.record.fenced,
            watermark: group.record.watermark,
            lease_ttl_ms: group.ttl().as_millis() as u64,
            max_lag: group.plan.settings.max_lag,
            members: group
                .plan
                .members
                .iter()
                .map(|name| {
                    let node = snapshot.nodes.iter().find(|n| &n.name == name);
                    MemberStatus {
                        name: name.clone(),
                        state: node
                            .map(|n| n.state.clone())
                            .unwrap_or_else(|| "starting".into()),
                        height: node.and_then(|n| n.height),
                        lag: node.and_then(|n| n.height).map(|h| best.saturating_sub(h)),
                        active: active_member == Some(name.as_str()),
                    }
                })
                .collect(),
            blocks_produced: group.blocks_produced,
            last_takeover_ms: group.last_takeover_ms,
            max_gap_ms: group.max_gap_ms,
            last_error: group.last_error.clone(),
        }
    }

    /// Ask for `member` to become the active producer of `group`: the current
    /// holder steps down first, then `member` takes the next epoch.
    pub async fn promote(&self, group: &str, member: &str) -> Result<(), ControlError> {
        let (plan, store) = self.group_store(group)?;
        if plan.members.iter().any(|m| m == member) {
            let snapshot = self.snapshot();
            let status = snapshot.nodes.iter().find(|n| n.name == member);
            if status.is_none_or(|s| !may_take_over(&s.state)) {
                return Err(ControlError::Invalid(format!(
                    "{member} is not healthy ({}); it cannot take over",
                    status.map(|s| s.state.as_str()).unwrap_or("unknown")
                )));
            }
            let record = store.read(group).await?;
            let best = best_height(&plan, &record, &snapshot.nodes);
            let lag = best.saturating_sub(status.and_then(|s| s.height).unwrap_or(0));
            if lag > plan.settings.max_lag {
                return Err(ControlError::Invalid(format!(
                    "{member} is {lag} blocks behind (max lag {}); wait for it to sync",
                    plan.settings.max_lag
                )));
            }
            let holder = GroupRuntime::holder_id(&self.fleet_name(), member);
            store.set_preferred(group, &holder).await?;
        } else {
            // A member run by another control plane sharing the lease store.
            store.set_preferred(group, member).await?;
        }
        self.record_event(
            Some(member),
            "promote",
            &format!("group {group}: promotion of {member} requested"),
        );
        Ok(())
    }

    /// Stop (`true`) or resume (`false`) all production of `group`.
    pub async fn fence(&self, group: &str, fenced: bool) -> Result<(), ControlError> {
        let (_, store) = self.group_store(group)?;
        store.set_fenced(group, fenced).await?;
        let word = if fenced { "fenced" } else { "unfenced" };
        self.record_event(None, word, &format!("group {group}: {word}"));
        Ok(())
    }

    fn group_store(&self, group: &str) -> Result<(GroupPlan, LeaseStore), ControlError> {
        let fleet = self
            .fleet()
            .ok_or_else(|| ControlError::Invalid("no manifest is applied".into()))?;
        let plans = groups(&fleet);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        let Some(plan) = plans.iter().find(|p| p.name == group) else {
            let hint = chainfleet_spec::nearest(group, &names)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(ControlError::Invalid(format!(
                "no producer group is named `{group}`{hint} (groups: {})",
                names.join(", ")
            )));
        };
        let store = match &plan.settings.backend {
            LeaseBackend::Embedded => LeaseStore::embedded(self.state_dir())?,
            LeaseBackend::Etcd { endpoints, prefix } => LeaseStore::etcd(endpoints, prefix)?,
        };
        Ok((plan.clone(), store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_form_groups_explicit_and_implicit() {
        let text = "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
producerGroups:
  main: {leaseTtl: 2s, maxLag: 1}
instances:
  - {name: a, chain: litecoin, role: producer, replicas: 2, producerGroup: main}
  - {name: b, chain: litecoin, role: producer, producerGroup: main}
  - {name: solo, chain: litecoin, role: producer}
  - {name: follower, chain: litecoin}
  - {name: real, chain: litecoin, network: mainnet, role: producer}
";
        let fleet = chainfleet_spec::parse(text, "t.yaml").expect("valid").fleet;
        let groups = groups(&fleet);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].name, "main");
        assert_eq!(groups[0].members, vec!["a-0", "a-1", "b-0"]);
        assert_eq!(groups[0].settings.lease_ttl.get(), Duration::from_secs(2));
        assert_eq!(groups[1].name, "solo");
        assert_eq!(groups[1].members, vec!["solo-0"]);
    }
}
