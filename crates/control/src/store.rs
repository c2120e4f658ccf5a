//! The embedded store: one SQLite file in the state dir with the desired
//! manifest, node records, events and the last status of every node.
//!
//! Each write is one transaction, so a control plane killed at any point
//! leaves a consistent store behind.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::ControlError;

/// What the store knows about one node, kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node name, `INSTANCE-REPLICA`.
    pub name: String,
    /// Instance name.
    pub instance: String,
    /// Replica index.
    pub replica: u32,
    /// Chain name, as in the manifest.
    pub chain: String,
    /// Data directory.
    pub data_dir: String,
    /// RPC port.
    pub rpc_port: u16,
    /// P2P port.
    pub p2p_port: u16,
    /// Generated RPC user.
    pub rpc_user: String,
    /// Generated RPC password. Never logged or served.
    pub rpc_password: String,
    /// Process id while it runs.
    pub pid: Option<u32>,
    /// Process start ticks while it runs.
    pub start_ticks: Option<u64>,
    /// JSON of the launch spec the running process was started with.
    pub launch: Option<String>,
    /// How often the node was restarted after a crash.
    pub restarts: u32,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing id, for following.
    pub id: i64,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    /// Node it concerns, if any.
    pub node: Option<String>,
    /// What happened, as a short kind such as `started`, `crashed`, `adopted`.
    pub kind: String,
    /// Human-readable detail.
    pub message: String,
}

/// The SQLite store.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

fn db_error(action: &'static str) -> impl FnOnce(rusqlite::Error) -> ControlError {
    move |source| ControlError::Store { action, source }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    replica INTEGER NOT NULL,
    chain TEXT NOT NULL,
    data_dir TEXT NOT NULL,
    rpc_port INTEGER NOT NULL,
    p2p_port INTEGER NOT NULL,
    rpc_user TEXT NOT NULL,
    rpc_password TEXT NOT NULL,
    pid INTEGER,
    start_ticks INTEGER,
    launch TEXT,
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    node TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status (name TEXT PRIMARY KEY, json TEXT NOT NULL);
";

/// Events kept; older ones are pruned.
const MAX_EVENTS: i64 = 100_000;

impl Store {
    /// Open (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, ControlError> {
        let conn = Connection::open(path).map_err(db_error("open the state database"))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        )
        .map_err(db_error("configure the state database"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db_error("create the state tables"))?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent; keep going.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A metadata value such as the desired manifest.
    pub fn meta(&self, key: &str) -> Result<Option<String>, ControlError> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(db_error("read metadata"))
    }

    /// Set a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), ControlError> {
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(db_error("write metadata"))
    }

    /// Every node record.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, ControlError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT name, instance, replica, chain, data_dir, rpc_port, p2p_port, rpc_user,
                        rpc_password, pid, start_ticks, launch, restarts
                 FROM nodes ORDER BY instance, replica",
            )
            .map_err(db_error("read nodes"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(NodeRecord {
                    name: row.get(0)?,
                    instance: row.get(1)?,
                    replica: row.get(2)?,
                    chain: row.get(3)?,
                    data_dir: row.get(4)?,
                    rpc_port: row.get(5)?,
                    p2p_port: row.get(6)?,
                    rpc_user: row.get(7)?,
                    rpc_password: row.get(8)?,
                    pid: row.get(9)?,
                    start_ticks: row.get::<_, Option<i64>>(10)?.map(|t| t as u64),
                    launch: row.get(11)?,
                    restarts: row.get(12)?,
                })
            })
            .map_err(db_error("read nodes"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_error("read nodes"))
    }

    /// Insert or replace a node record.
    pub fn put_node(&self, node: &NodeRecord) -> Result<(), ControlError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO nodes (name, instance, replica, chain, data_dir, rpc_port,
                    p2p_port, rpc_user, rpc_password, pid, start_ticks, launch, restarts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    node.name,
                    node.instance,
                    node.replica,
                    node.chain,
                    node.data_dir,
                    node.rpc_port,
                    node.p2p_port,
                    node.rpc_user,
                    node.rpc_password,
                    node.pid,
                    node.start_ticks.map(|t| t as i64),
                    node.launch,
                    node.restarts
                ],
            )
            .map(|_| ())
            .map_err(db_error("write a node record"))
    }

    /// Forget a node.
    pub fn delete_node(&self, name: &str) -> Result<(), ControlError> {
        let conn = self.conn();
        conn.execute("DELETE FROM nodes WHERE name = ?1", [name])
            .map_err(db_error("delete a node record"))?;
        conn.execute("DELETE FROM status WHERE name = ?1", [name])
            .map_err(db_error("delete a node status"))?;
        Ok(())
    }

    /// Record an event and return it with its id.
    pub fn add_event(
        &self,
        node: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<Event, ControlError> {
        let time_ms = now_ms();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO events (time_ms, node, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![time_ms, node, kind, message],
        )
        .map_err(db_error("record an event"))?;
        let id = conn.last_insert_rowid();
        if id % 1000 == 0 {
            conn.execute("DELETE FROM events WHERE id <= ?1", [id - MAX_EVENTS])
                .map_err(db_error("prune events"))?;
        }
        Ok(Event {
            id,
            time_ms,
            node: node.map(str::to_string),
            kind: kind.to_string(),
            message: message.to_string(),
        })
    }

    /// Events after `after_id`, oldest first, at most `limit`.
    pub fn events_after(&self, after_id: i64, limit: u32) -> Result<Vec<Event>, ControlError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT id, time_ms, node, kind, message FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(db_error("read events"))?;
        let rows = statement
            .query_map(params![after_id, limit], event_from_row)
            .map_err(db_error("read events"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_error("read events"))
    }

    /// The last `limit` events of one node, oldest first.
    pub fn last_events_of(&self, node: &str, limit: u32) -> Result<Vec<Event>, ControlError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT id, time_ms, node, kind, message FROM events WHERE node = ?1
                 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(db_error("read events"))?;
        let rows = statement
            .query_map(params![node, limit], event_from_row)
            .map_err(db_error("read events"))?;
        let mut events: Vec<Event> = rows
            .collect::<Result<_, _>>()
            .map_err(db_error("read events"))?;
        events.reverse();
        Ok(events)
    }

    /// Save the last status of every node, in one transaction.
    pub fn save_statuses<'a>(
        &self,
        statuses: impl Iterator<Item = (&'a str, String)>,
    ) -> Result<(), ControlError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("save statuses"))?;
        for (name, json) in statuses {
            tx.execute(
                "INSERT OR REPLACE INTO status (name, json) VALUES (?1, ?2)",
                params![name, json],
            )
            .map_err(db_error("save statuses"))?;
        }
        tx.commit().map_err(db_error("save statuses"))
    }

    /// The last saved status JSON of every node.
    pub fn statuses(&self) -> Result<Vec<(String, String)>, ControlError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name, json FROM status")
            .map_err(db_error("read statuses"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(db_error("read statuses"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_error("read statuses"))
    }
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        id: row.get(0)?,
        time_ms: row.get(1)?,
        node: row.get(2)?,
        kind: row.get(3)?,
        message: row.get(4)?,
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            instance: "ltc".into(),
            replica: 0,
            chain: "litecoin".into(),
            data_dir: "/d".into(),
            rpc_port: 1000,
            p2p_port: 1001,
            rpc_user: "u".into(),
            rpc_password: "p".into(),
            pid: Some(42),
            start_ticks: Some(7),
            launch: Some("{}".into()),
            restarts: 1,
        }
    }

    #[test]
    fn records_events_and_statuses_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let store = Store::open(&path).expect("open");
            store.put_node(&record("ltc-0")).expect("put");
            store.set_meta("manifest", "text").expect("meta");
            store
                .add_event(Some("ltc-0"), "started", "pid 42")
                .expect("event");
            store
                .save_statuses([("ltc-0", "{\"h\":1}".to_string())].into_iter())
                .expect("status");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.nodes().expect("nodes"), vec![record("ltc-0")]);
        assert_eq!(
            store.meta("manifest").expect("meta").as_deref(),
            Some("text")
        );
        let events = store.events_after(0, 10).expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "started");
        assert_eq!(
            store.last_events_of("ltc-0", 5).expect("node events").len(),
            1
        );
        assert_eq!(store.statuses().expect("statuses").len(), 1);
        store.delete_node("ltc-0").expect("delete");
        assert!(store.nodes().expect("nodes").is_empty());
        assert!(store.statuses().expect("statuses").is_empty());
    }

    #[test]
    fn a_corrupt_database_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        std::fs::write(&path, vec![0xAB; 8192]).expect("write garbage");
        let err = Store::open(&path).expect_err("garbage is not a database");
        assert!(err.to_string().contains("state database"), "{err}");
    }
}
