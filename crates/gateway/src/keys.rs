//! API keys: created with a random secret shown once, stored as a SHA-256
//! hash in the state dir's `gateway.db`, listed and revoked by id.
//!
//! Every change bumps a version counter; running gateways poll it and
//! reload, so a revocation takes effect within the poll interval (at once
//! for gateways in the process that made the change).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::GatewayError;

/// Key writes made in this process, so gateways here reload at once
/// instead of at their next poll (other processes are seen by polling).
static WRITES: (std::sync::Mutex<u64>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Wake this process's gateways: a key was created or revoked.
fn written() {
    let (count, changed) = &WRITES;
    let mut count = count
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *count += 1;
    changed.notify_all();
}

/// Wait up to `limit` for a key write in this process.
pub(crate) fn wait_for_write(limit: Duration) {
    let (count, changed) = &WRITES;
    let guard = count
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let seen = *guard;
    let _ = changed.wait_timeout_while(guard, limit, |now| *now == seen);
}

/// What every key starts with, so keys are easy to spot in leaked text.
pub const KEY_PREFIX: &str = "cfk_";

/// A key's settings as stored and listed. Holds neither the key nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Public id, also part of the key itself (`cfk_ID_SECRET`).
    pub id: String,
    /// The instance the key is for.
    pub instance: String,
    /// A free-text label (who it is for).
    pub label: String,
    /// Allowed methods (classes or names).
    pub allow: Vec<String>,
    /// Denied methods (classes or names).
    pub deny: Vec<String>,
    /// Requests per second (None: the instance's `keyRps`).
    pub rps: Option<u32>,
    /// Burst (None: the instance's `keyBurst`).
    pub burst: Option<u32>,
    /// Concurrent requests (None: the instance's `keyConcurrency`).
    pub concurrency: Option<u32>,
    /// Client networks allowed to use it (empty: any).
    pub cidrs: Vec<String>,
    /// When it was created (Unix ms).
    pub created_ms: i64,
    /// When it expires (Unix ms), if ever.
    pub expires_ms: Option<i64>,
    /// When it was revoked (Unix ms), if it was.
    pub revoked_ms: Option<i64>,
}

/// What to create a key with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// The instance the key is for.
    pub instance: String,
    /// A label.
    #[serde(default)]
    pub label: String,
    /// Allowed methods; empty means read-only (`[read]`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Denied methods.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Requests per second.
    #[serde(default)]
    pub rps: Option<u32>,
    /// Burst.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Concurrent requests.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Client networks allowed to use it, e.g. `10.0.0.0/8`, `127.0.0.1/32`.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Lifetime in seconds from now, if it expires.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A key just created: the only time its secret is visible.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The full key to hand to the user. Never stored.
    pub key: String,
    /// Its stored settings.
    pub info: KeyInfo,
}

/// The SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parse CIDR rules; a bare address means that one address.
pub fn parse_cidrs(cidrs: &[String]) -> Result<Vec<IpNet>, GatewayError> {
    cidrs
        .iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    GatewayError::Invalid(format!(
                        "`{text}` is not a CIDR block (e.g. 10.0.0.0/8) or an IP address"
                    ))
                })
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex(len: usize) -> Result<String, GatewayError> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes)
        .map_err(|err| GatewayError::Invalid(format!("no randomness available: {err}")))?;
    Ok(hex(&bytes))
}

/// The path of the key database in a state dir.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("gateway.db")
}

/// The key database of one state dir.
pub struct KeyStore {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  instance TEXT NOT NULL,
  info TEXT NOT NULL,
  revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS version (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
INSERT OR IGNORE INTO version (id, value) VALUES (0, 0);
";

fn db(action: &'static str) -> impl FnOnce(rusqlite::Error) -> GatewayError {
    move |source| GatewayError::Store { action, source }
}

impl KeyStore {
    /// Open (and create) `gateway.db` in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(state_dir).map_err(|source| GatewayError::Io {
            action: format!("create the state dir {}", state_dir.display()),
            source,
        })?;
        let conn = Connection::open(db_path(state_dir)).map_err(db("open gateway.db"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(db("set a busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db("enable WAL"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db("create the key tables"))?;
        Ok(KeyStore { conn })
    }

    /// The change counter; it grows on every create and revoke.
    pub fn version(&self) -> Result<i64, GatewayError> {
        self.conn
            .query_row("SELECT value FROM version WHERE id = 0", [], |row| {
                row.get(0)
            })
            .map_err(db("read the key version"))
    }

    /// Create a key. `known_instance` says whether an instance name exists
    /// (pass `|_| true` when that cannot be checked).
    pub fn create(
        &mut self,
        new: NewKey,
        known_instance: impl Fn(&str) -> bool,
    ) -> Result<CreatedKey, GatewayError> {
        if new.instance.is_empty() {
            return Err(GatewayError::Invalid(
                "give the instance the key is for (--instance NAME)".into(),
            ));
        }
        if !known_instance(&new.instance) {
            return Err(GatewayError::Invalid(format!(
                "no instance is named `{}`; `chainfleet status` lists them",
                new.instance
            )));
        }
        for rule in new.allow.iter().chain(&new.deny) {
            if let Some(problem) = chainfleet_spec::access::rule_problem(rule) {
                return Err(GatewayError::Invalid(format!("rule `{rule}`: {problem}")));
            }
        }
        for (what, value) in [
            ("rps", new.rps),
            ("burst", new.burst),
            ("concurrency", new.concurrency),
        ] {
            if value == Some(0) {
                return Err(GatewayError::Invalid(format!("{what} must be at least 1")));
            }
        }
        parse_cidrs(&new.cidrs)?;
        if new.label.len() > 200 {
            return Err(GatewayError::Invalid(
                "the label is longer than 200 bytes".into(),
            ));
        }
        let id = random_hex(4)?;
        let key = format!("{KEY_PREFIX}{id}_{}", random_hex(32)?);
        let created_ms = now_ms();
        let expires_ms = new.expires_in_seconds.map(|s| {
            created_ms.saturating_add(i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
        });
        let info = KeyInfo {
            id: id.clone(),
            instance: new.instance,
            label: new.label,
            allow: if new.allow.is_empty() {
                vec!["read".into()]
            } else {
                new.allow
            },
            deny: new.deny,
            rps: new.rps,
            burst: new.burst,
            concurrency: new.concurrency,
            cidrs: new.cidrs,
            created_ms,
            expires_ms,
            revoked_ms: None,
        };
        let json = serde_json::to_string(&info)
            .map_err(|err| GatewayError::Invalid(format!("cannot encode the key: {err}")))?;
        let tx = self.conn.transaction().map_err(db("begin"))?;
        tx.execute(
            "INSERT INTO keys (id, hash, instance, info) VALUES (?1, ?2, ?3, ?4)",
            params![id, hex(&hash_key(&key)), info.instance, json],
        )
        .map_err(db("store the key"))?;
        tx.execute("UPDATE version SET value = value + 1 WHERE id = 0", [])
            .map_err(db("bump the key version"))?;
        tx.commit().map_err(db("commit the key"))?;
        written();
        Ok(CreatedKey { key, info })
    }

    fn rows(&self, sql: &str) -> Result<Vec<(String, KeyInfo)>, GatewayError> {
        let mut stmt = self.conn.prepare(sql).map_err(db("list keys"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(db("list keys"))?;
        let mut out = Vec::new();
        for row in rows {
            let (hash, json, revoked_ms) = row.map_err(db("read a key"))?;
            match serde_json::from_str::<KeyInfo>(&json) {
                Ok(mut info) => {
                    info.revoked_ms = revoked_ms;
                    out.push((hash, info));
                }
                Err(err) => tracing::warn!(error = %err, "skipping an unreadable key row"),
            }
        }
        Ok(out)
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list(&self) -> Result<Vec<KeyInfo>, GatewayError> {
        let mut keys: Vec<KeyInfo> = self
            .rows("SELECT hash, info, revoked_ms FROM keys")?
            .into_iter()
            .map(|(_, info)| info)
            .collect();
        keys.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(keys)
    }

    /// Keys that are not revoked, with their hex hashes.
    pub fn active(&self) -> Result<Vec<(String, KeyInfo)>, GatewayError> {
        self.rows("SELECT hash, info, revoked_ms FROM keys WHERE revoked_ms IS NULL")
    }

    /// Revoke a key by id. Returns false when no active key has that id.
    pub fn revoke(&mut self, id: &str) -> Result<bool, GatewayError> {
        let tx = self.conn.transaction().map_err(db("begin"))?;
        let changed = tx
            .execute(
                "UPDATE keys SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL",
                params![now_ms(), id],
            )
            .map_err(db("revoke the key"))?;
        tx.execute("UPDATE version SET value = value + 1 WHERE id = 0", [])
            .map_err(db("bump the key version"))?;
        tx.commit().map_err(db("commit the revocation"))?;
        written();
        Ok(changed > 0)
    }

    /// One key by id.
    pub fn get(&self, id: &str) -> Result<Option<KeyInfo>, GatewayError> {
        let row: Option<(String, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT info, revoked_ms FROM keys WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(db("read a key"))?;
        Ok(row.and_then(|(json, revoked_ms)| {
            serde_json::from_str::<KeyInfo>(&json).ok().map(|mut info| {
                info.revoked_ms = revoked_ms;
                info
            })
        }))
    }
}

/// Decode a hex hash as stored.
pub(crate) fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hashed_shown_once_and_revocable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = KeyStore::open(dir.path()).expect("open");
        let v0 = store.version().expect("version");
        let created = store
            .create(
                NewKey {
                    instance: "ltc".into(),
                    cidrs: vec!["127.0.0.1".into()],
                    ..NewKey::default()
                },
                |_| true,
            )
            .expect("create");
        assert!(created
            .key
            .starts_with(&format!("{KEY_PREFIX}{}_", created.info.id)));
        assert_eq!(created.info.allow, vec!["read".to_string()]);
        assert!(store.version().expect("version") > v0);
        let raw = std::fs::read(db_path(dir.path())).expect("db");
        let secret = created.key.as_bytes();
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret),
            "the key itself is stored"
        );
        let active = store.active().expect("active");
        assert_eq!(unhex32(&active[0].0), Some(hash_key(&created.key)));
        assert!(store.revoke(&created.info.id).expect("revoke"));
        assert!(!store.revoke(&created.info.id).expect("revoke twice"));
        assert!(store.active().expect("active").is_empty());
        assert!(store.list().expect("list")[0].revoked_ms.is_some());
    }

    #[test]
    fn bad_keys_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = KeyStore::open(dir.path()).expect("open");
        fn store_err(store: &mut KeyStore, new: NewKey) -> String {
            match store.create(new, |name| name == "ltc") {
                Ok(_) => panic!("accepted"),
                Err(err) => err.to_string(),
            }
        }
        let base = NewKey {
            instance: "ltc".into(),
            ..NewKey::default()
        };
        assert!(store_err(
            &mut store,
            NewKey {
                instance: "eth".into(),
                ..base.clone()
            }
        )
        .contains("no instance"));
        assert!(store_err(
            &mut store,
            NewKey {
                cidrs: vec!["10.0.0.0/33".into()],
                ..base.clone()
            }
        )
        .contains("CIDR"));
        assert!(store_err(
            &mut store,
            NewKey {
                rps: Some(0),
                ..base.clone()
            }
        )
        .contains("rps"));
        assert!(store_err(
            &mut store,
            NewKey {
                allow: vec!["a b".into()],
                ..base
            }
        )
        .contains("whitespace"));
    }
}
