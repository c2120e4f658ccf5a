//! Producer leases with fencing epochs, in the embedded store or in etcd.
//!
//! A group has at most one holder. Each acquisition takes the next epoch,
//! which only ever increases. The watermark (last produced height and its
//! epoch) is written only by the current holder, so a deposed producer cannot
//! move it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

use crate::store::now_ms;
use crate::ControlError;

/// The last block a group produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Watermark {
    /// Its height.
    pub height: u64,
    /// The epoch that produced it.
    pub epoch: u64,
    /// When it was recorded (Unix ms).
    pub time_ms: i64,
}

/// What the lease store knows about one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupRecord {
    /// Current holder, if its lease has not expired.
    pub holder: Option<String>,
    /// Epoch of the current (or last) holder.
    pub epoch: u64,
    /// Milliseconds until the lease expires, when known.
    pub expires_in_ms: Option<i64>,
    /// Last produced block.
    pub watermark: Option<Watermark>,
    /// Whether production is stopped for maintenance.
    pub fenced: bool,
    /// Member asked for by `promote`, and when (Unix ms).
    pub preferred: Option<(String, i64)>,
}

/// A lease this control plane holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    /// Its epoch.
    pub epoch: u64,
    /// etcd lease id (0 for the embedded store).
    pub lease_id: i64,
}

/// Errors of a lease backend.
fn backend_error(detail: impl Into<String>) -> ControlError {
    ControlError::LeaseStore(detail.into())
}

/// A lease backend.
#[derive(Clone)]
pub enum LeaseStore {
    /// SQLite in the state dir: one control plane runs the whole group.
    Embedded(Arc<Mutex<Connection>>),
    /// etcd, shared by several control planes.
    Etcd(EtcdLeases),
}

impl LeaseStore {
    /// The embedded store in `state_dir`.
    pub fn embedded(state_dir: &Path) -> Result<Self, ControlError> {
        let conn = Connection::open(state_dir.join("leases.db")).map_err(|source| {
            ControlError::Store {
                action: "open the lease database",
                source,
            }
        })?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS producer_groups (
                name TEXT PRIMARY KEY,
                holder TEXT,
                epoch INTEGER NOT NULL DEFAULT 0,
                expires_ms INTEGER NOT NULL DEFAULT 0,
                watermark_height INTEGER,
                watermark_epoch INTEGER,
                watermark_ms INTEGER,
                fenced INTEGER NOT NULL DEFAULT 0,
                preferred TEXT,
                preferred_ms INTEGER
             );",
        )
        .map_err(|source| ControlError::Store {
            action: "create the lease tables",
            source,
        })?;
        Ok(LeaseStore::Embedded(Arc::new(Mutex::new(conn))))
    }

    /// An etcd store.
    pub fn etcd(endpoints: &[String], prefix: &str) -> Result<Self, ControlError> {
        Ok(LeaseStore::Etcd(EtcdLeases::new(endpoints, prefix)?))
    }

    /// Read a group's record.
    pub async fn read(&self, group: &str) -> Result<GroupRecord, ControlError> {
        match self {
            // Reads run every tick on standbys: no write transaction, no fsync.
            LeaseStore::Embedded(conn) => {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                embedded_read(&conn, group).map_err(|source| ControlError::Store {
                    action: "read a producer lease",
                    source,
                })
            }
            LeaseStore::Etcd(etcd) => etcd.read(group).await,
        }
    }

    /// Take the lease for `holder` if nobody holds it and the group is not fenced.
    pub async fn acquire(
        &self,
        group: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                let record = embedded_read_for_update(tx, group)?;
                if record.fenced || record.holder.is_some() {
                    return Ok(None);
                }
                let epoch = record.epoch + 1;
                tx.execute(
                    "UPDATE producer_groups SET holder = ?2, epoch = ?3, expires_ms = ?4,
                        preferred = NULL, preferred_ms = NULL WHERE name = ?1",
                    params![
                        group,
                        holder,
                        epoch as i64,
                        now_ms() + ttl.as_millis() as i64
                    ],
                )?;
                Ok(Some(HeldLease { epoch, lease_id: 0 }))
            }),
            LeaseStore::Etcd(etcd) => etcd.acquire(group, holder, ttl).await,
        }
    }

    /// Extend a held lease; `false` means it is lost.
    pub async fn renew(
        &self,
        group: &str,
        holder: &str,
        lease: HeldLease,
        ttl: Duration,
    ) -> Result<bool, ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                let changed = tx.execute(
                    "UPDATE producer_groups SET expires_ms = ?4
                     WHERE name = ?1 AND holder = ?2 AND epoch = ?3 AND expires_ms > ?5",
                    params![
                        group,
                        holder,
                        lease.epoch as i64,
                        now_ms() + ttl.as_millis() as i64,
                        now_ms()
                    ],
                )?;
                Ok(changed == 1)
            }),
            LeaseStore::Etcd(etcd) => etcd.renew(lease).await,
        }
    }

    /// Give a held lease up at once.
    pub async fn release(
        &self,
        group: &str,
        holder: &str,
        lease: HeldLease,
    ) -> Result<(), ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                tx.execute(
                    "UPDATE producer_groups SET holder = NULL, expires_ms = 0
                     WHERE name = ?1 AND holder = ?2 AND epoch = ?3",
                    params![group, holder, lease.epoch as i64],
                )?;
                Ok(())
            }),
            LeaseStore::Etcd(etcd) => etcd.release(lease).await,
        }
    }

    /// Record that `height` is about to be produced in this epoch. Refused
    /// (`false`) unless `holder` still holds the lease and `height` is above
    /// the watermark.
    pub async fn advance_watermark(
        &self,
        group: &str,
        holder: &str,
        lease: HeldLease,
        height: u64,
        stale_before_ms: i64,
    ) -> Result<bool, ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                let changed = tx.execute(
                    "UPDATE producer_groups SET watermark_height = ?4, watermark_epoch = ?3,
                        watermark_ms = ?5
                     WHERE name = ?1 AND holder = ?2 AND epoch = ?3 AND expires_ms > ?5
                       AND fenced = 0 AND (watermark_height IS NULL OR watermark_height < ?4
                         OR (watermark_height = ?4 AND watermark_epoch = ?3)
                         OR (watermark_epoch < ?3 AND watermark_ms < ?6))",
                    params![
                        group,
                        holder,
                        lease.epoch as i64,
                        height as i64,
                        now_ms(),
                        stale_before_ms
                    ],
                )?;
                Ok(changed == 1)
            }),
            LeaseStore::Etcd(etcd) => {
                etcd.advance_watermark(group, holder, lease, height, stale_before_ms)
                    .await
            }
        }
    }

    /// Stop (or resume) all production of a group.
    pub async fn set_fenced(&self, group: &str, fenced: bool) -> Result<(), ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                embedded_read_for_update(tx, group)?;
                tx.execute(
                    "UPDATE producer_groups SET fenced = ?2 WHERE name = ?1",
                    params![group, fenced],
                )?;
                Ok(())
            }),
            LeaseStore::Etcd(etcd) => etcd.set_fenced(group, fenced).await,
        }
    }

    /// Ask for `member` to be the next holder.
    pub async fn set_preferred(&self, group: &str, member: &str) -> Result<(), ControlError> {
        match self {
            LeaseStore::Embedded(conn) => embedded_tx(conn, |tx| {
                embedded_read_for_update(tx, group)?;
                tx.execute(
                    "UPDATE producer_groups SET preferred = ?2, preferred_ms = ?3 WHERE name = ?1",
                    params![group, member, now_ms()],
                )?;
                Ok(())
            }),
            LeaseStore::Etcd(etcd) => etcd.set_preferred(group, member).await,
        }
    }
}

fn embedded_tx<T>(
    conn: &Mutex<Connection>,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, rusqlite::Error>,
) -> Result<T, ControlError> {
    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
    let fail = |source| ControlError::Store {
        action: "update a producer lease",
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(fail)?;
    let value = work(&tx).map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(value)
}

/// Read a group's row inside a write transaction, creating it if missing.
fn embedded_read_for_update(
    tx: &rusqlite::Transaction<'_>,
    group: &str,
) -> Result<GroupRecord, rusqlite::Error> {
    tx.execute(
        "INSERT OR IGNORE INTO producer_groups (name) VALUES (?1)",
        [group],
    )?;
    embedded_read(tx, group)
}

/// A group's row; a group never written reads as the default.
fn embedded_read(conn: &Connection, group: &str) -> Result<GroupRecord, rusqlite::Error> {
    let now = now_ms();
    conn.query_row(
        "SELECT holder, epoch, expires_ms, watermark_height, watermark_epoch, watermark_ms,
                fenced, preferred, preferred_ms
         FROM producer_groups WHERE name = ?1",
        [group],
        |row| {
            let holder: Option<String> = row.get(0)?;
            let expires_ms: i64 = row.get(2)?;
            let live = holder.filter(|_| expires_ms > now);
            let watermark = match (row.get::<_, Option<i64>>(3)?, row.get::<_, Option<i64>>(4)?) {
                (Some(height), Some(epoch)) => Some(Watermark {
                    height: height as u64,
                    epoch: epoch as u64,
                    time_ms: row.get::<_, Option<i64>>(5)?.unwrap_or(0),
                }),
                _ => None,
            };
            let preferred = match (
                row.get::<_, Option<String>>(7)?,
                row.get::<_, Option<i64>>(8)?,
            ) {
                (Some(member), Some(at)) => Some((member, at)),
                _ => None,
            };
            Ok(GroupRecord {
                expires_in_ms: live.as_ref().map(|_| expires_ms - now),
                holder: live,
                epoch: row.get::<_, i64>(1)? as u64,
                watermark,
                fenced: row.get(6)?,
                preferred,
            })
        },
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// Leases in etcd, through its JSON gateway (`/v3/...`), so no gRPC stack is needed.
#[derive(Clone)]
pub struct EtcdLeases {
    http: reqwest::Client,
    endpoints: Vec<String>,
    prefix: String,
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(value: Option<&Value>) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value?.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// etcd writes 64-bit numbers as strings in JSON.
fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

impl EtcdLeases {
    fn new(endpoints: &[String], prefix: &str) -> Result<Self, ControlError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .connect_timeout(Duration::from_millis(500))
            .build()
            .map_err(|err| backend_error(format!("cannot build the etcd client: {err}")))?;
        Ok(EtcdLeases {
            http,
            endpoints: endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, group: &str, what: &str) -> String {
        format!("{}groups/{group}/{what}", self.prefix)
    }

    /// POST to the first endpoint that answers.
    async fn post(&self, path: &str, body: Value) -> Result<Value, ControlError> {
        let mut last = String::from("no etcd endpoints");
        for endpoint in &self.endpoints {
            match self
                .http
                .post(format!("{endpoint}{path}"))
                .json(&body)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status();
                    let value: Value = response
                        .json()
                        .await
                        .map_err(|err| backend_error(format!("etcd {endpoint}{path}: {err}")))?;
                    if status.is_success() {
                        return Ok(value);
                    }
                    last = format!("etcd {endpoint}{path}: HTTP {status}: {value}");
                }
                Err(err) => last = format!("etcd {endpoint} did not answer: {err}"),
            }
        }
        Err(backend_error(last))
    }

    async fn get(&self, key: &str) -> Result<Option<(String, i64, i64)>, ControlError> {
        let answer = self.post("/v3/kv/range", json!({"key": b64(key)})).await?;
        let Some(kv) = answer.get("kvs").and_then(|k| k.get(0)) else {
            return Ok(None);
        };
        let value = unb64(kv.get("value")).unwrap_or_default();
        let mod_revision = number(kv.get("mod_revision")).unwrap_or(0);
        let lease = number(kv.get("lease")).unwrap_or(0);
        Ok(Some((value, mod_revision, lease)))
    }

    async fn read(&self, group: &str) -> Result<GroupRecord, ControlError> {
        let lease = self.get(&self.key(group, "lease")).await?;
        let epoch = self
            .get(&self.key(group, "epoch"))
            .await?
            .and_then(|(v, _, _)| v.parse().ok())
            .unwrap_or(0);
        let watermark = self
            .get(&self.key(group, "watermark"))
            .await?
            .and_then(|(v, _, _)| parse_watermark(&v));
        let fenced = self.get(&self.key(group, "fenced")).await?.is_some();
        let preferred = self
            .get(&self.key(group, "preferred"))
            .await?
            .and_then(|(v, _, _)| {
                let (member, at) = v.rsplit_once('|')?;
                Some((member.to_string(), at.parse().ok()?))
            });
        let mut record = GroupRecord {
            epoch,
            watermark,
            fenced,
            preferred,
            ..GroupRecord::default()
        };
        if let Some((value, _, lease_id)) = lease {
            let (holder, _) = value.rsplit_once('|').unwrap_or((value.as_str(), ""));
            record.holder = Some(holder.to_string());
            let ttl = self
                .post("/v3/lease/timetolive", json!({"ID": lease_id.to_string()}))
                .await
                .ok()
                .and_then(|a| number(a.get("TTL")));
            record.expires_in_ms = ttl.map(|s| s * 1000);
        }
        Ok(record)
    }

    async fn acquire(
        &self,
        group: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, ControlError> {
        let epoch_key = self.key(group, "epoch");
        let lease_key = self.key(group, "lease");
        let fenced_key = self.key(group, "fenced");
        let (epoch, epoch_revision) = match self.get(&epoch_key).await? {
            Some((value, revision, _)) => (value.parse::<u64>().unwrap_or(0), revision),
            None => (0, 0),
        };
        // etcd leases have whole seconds; round up so the server never expires early.
        let seconds = ttl.as_millis().div_ceil(1000).max(1);
        let grant = self
            .post("/v3/lease/grant", json!({"TTL": seconds.to_string()}))
            .await?;
        let lease_id =
            number(grant.get("ID")).ok_or_else(|| backend_error("lease grant without an ID"))?;
        let next = epoch + 1;
        let epoch_compare = if epoch_revision == 0 {
            json!({"key": b64(&epoch_key), "target": "CREATE", "create_revision": "0"})
        } else {
            json!({"key": b64(&epoch_key), "target": "MOD", "mod_revision": epoch_revision.to_string()})
        };
        let answer = self
            .post(
                "/v3/kv/txn",
                json!({
                    "compare": [
                        {"key": b64(&lease_key), "target": "CREATE", "create_revision": "0"},
                        {"key": b64(&fenced_key), "target": "CREATE", "create_revision": "0"},
                        epoch_compare,
                    ],
                    "success": [
                        {"request_put": {"key": b64(&lease_key), "value": b64(&format!("{holder}|{next}")), "lease": lease_id.to_string()}},
                        {"request_put": {"key": b64(&epoch_key), "value": b64(&next.to_string())}},
                        {"request_delete_range": {"key": b64(&self.key(group, "preferred"))}},
                    ],
                }),
            )
            .await?;
        if answer.get("succeeded").and_then(Value::as_bool) == Some(true) {
            Ok(Some(HeldLease {
                epoch: next,
                lease_id,
            }))
        } else {
            let _ = self
                .post("/v3/lease/revoke", json!({"ID": lease_id.to_string()}))
                .await;
            Ok(None)
        }
    }

    async fn renew(&self, lease: HeldLease) -> Result<bool, ControlError> {
        let answer = self
            .post(
                "/v3/lease/keepalive",
                json!({"ID": lease.lease_id.to_string()}),
            )
            .await?;
        let ttl = answer
            .get("result")
            .and_then(|r| number(r.get("TTL")))
            .unwrap_or(0);
        Ok(ttl > 0)
    }

    async fn release(&self, lease: HeldLease) -> Result<(), ControlError> {
        self.post(
            "/v3/lease/revoke",
            json!({"ID": lease.lease_id.to_string()}),
        )
        .await
        .map(|_| ())
    }

    async fn advance_watermark(
        &self,
        group: &str,
        holder: &str,
        lease: HeldLease,
        height: u64,
        stale_before_ms: i64,
    ) -> Result<bool, ControlError> {
        let watermark_key = self.key(group, "watermark");
        let (current, revision) = match self.get(&watermark_key).await? {
            Some((value, revision, _)) => (parse_watermark(&value), revision),
            None => (None, 0),
        };
        if current.is_some_and(|w| !watermark_allows(w, height, lease.epoch, stale_before_ms)) {
            return Ok(false);
        }
        let watermark_compare = if revision == 0 {
            json!({"key": b64(&watermark_key), "target": "CREATE", "create_revision": "0"})
        } else {
            json!({"key": b64(&watermark_key), "target": "MOD", "mod_revision": revision.to_string()})
        };
        let value = format!("{height}|{}|{}", lease.epoch, now_ms());
        let answer = self
            .post(
                "/v3/kv/txn",
                json!({
                    "compare": [
                        {"key": b64(&self.key(group, "lease")), "target": "VALUE", "value": b64(&format!("{holder}|{}", lease.epoch))},
                        {"key": b64(&self.key(group, "fenced")), "target": "CREATE", "create_revision": "0"},
                        watermark_compare,
                    ],
                    "success": [{"request_put": {"key": b64(&watermark_key), "value": b64(&value)}}],
                }),
            )
            .await?;
        Ok(answer.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    async fn set_fenced(&self, group: &str, fenced: bool) -> Result<(), ControlError> {
        let key = b64(&self.key(group, "fenced"));
        let path = if fenced {
            "/v3/kv/put"
        } else {
            "/v3/kv/deleterange"
        };
        let body = if fenced {
            json!({"key": key, "value": b64("1")})
        } else {
            json!({"key": key})
        };
        self.post(path, body).await.map(|_| ())
    }

    async fn set_preferred(&self, group: &str, member: &str) -> Result<(), ControlError> {
        let value = format!("{member}|{}", now_ms());
        self.post(
            "/v3/kv/put",
            json!({"key": b64(&self.key(group, "preferred")), "value": b64(&value)}),
        )
        .await
        .map(|_| ())
    }
}

/// Whether `epoch` may produce `height` given the watermark: above it, or
/// retrying its own last height after a failed attempt, or past a mark that
/// an earlier epoch recorded before `stale_before_ms` whose blocks no member
/// has (its producer died between recording and producing, or its blocks
/// died with its node).
pub fn watermark_allows(
    watermark: Watermark,
    height: u64,
    epoch: u64,
    stale_before_ms: i64,
) -> bool {
    height > watermark.height
        || (height == watermark.height && epoch == watermark.epoch)
        || (watermark.epoch < epoch && watermark.time_ms < stale_before_ms)
}

fn parse_watermark(value: &str) -> Option<Watermark> {
    let mut parts = value.split('|');
    Some(Watermark {
        height: parts.next()?.parse().ok()?,
        epoch: parts.next()?.parse().ok()?,
        time_ms: parts.next().and_then(|t| t.parse().ok()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_epochs_increase_and_the_watermark_is_fenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LeaseStore::embedded(dir.path()).expect("open");
        let ttl = Duration::from_millis(300);
        let a = store
            .acquire("g", "a", ttl)
            .await
            .expect("acquire")
            .expect("free");
        assert_eq!(a.epoch, 1);
        assert_eq!(
            store.acquire("g", "b", ttl).await.expect("acquire"),
            None,
            "held"
        );
        assert!(store
            .advance_watermark("g", "a", a, 10, 0)
            .await
            .expect("wm"));
        assert!(
            store
                .advance_watermark("g", "a", a, 10, 0)
                .await
                .expect("wm"),
            "own retry"
        );
        assert!(
            !store
                .advance_watermark("g", "a", a, 9, 0)
                .await
                .expect("wm"),
            "below"
        );
        assert!(
            !store
                .advance_watermark("g", "b", a, 11, 0)
                .await
                .expect("wm"),
            "not holder"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(
            !store.renew("g", "a", a, ttl).await.expect("renew"),
            "expired"
        );
        let b = store
            .acquire("g", "b", ttl)
            .await
            .expect("acquire")
            .expect("expired lease is free");
        assert_eq!(b.epoch, 2);
        assert!(
            !store
                .advance_watermark("g", "a", a, 11, 0)
                .await
                .expect("wm"),
            "deposed holder"
        );
        assert!(
            !store
                .advance_watermark("g", "b", b, 10, 0)
                .await
                .expect("wm"),
            "at another epoch's mark"
        );
        assert!(
            store
                .advance_watermark("g", "b", b, 10, now_ms() + 1)
                .await
                .expect("wm"),
            "a stale mark of another epoch is reclaimed"
        );
        store.set_fenced("g", true).await.expect("fence");
        assert!(
            !store
                .advance_watermark("g", "b", b, 11, 0)
                .await
                .expect("wm"),
            "fenced"
        );
        store.release("g", "b", b).await.expect("release");
        assert_eq!(
            store.acquire("g", "c", ttl).await.expect("acquire"),
            None,
            "fenced"
        );
        store.set_fenced("g", false).await.expect("unfence");
        let record = store.read("g").await.expect("read");
        assert_eq!(record.watermark.map(|w| (w.height, w.epoch)), Some((10, 2)));
        assert_eq!(record.epoch, 2);
    }

    #[test]
    fn watermark_values_parse_strictly() {
        assert_eq!(
            parse_watermark("5|2|9").map(|w| (w.height, w.epoch, w.time_ms)),
            Some((5, 2, 9))
        );
        assert_eq!(parse_watermark("x|2"), None);
        assert_eq!(parse_watermark(""), None);
    }
}
