//! `up`, `status`, `logs`, `down`, and surviving `kill -9` of the control plane.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `chainfleet up` process; SIGKILLed on drop.
pub(crate) struct ControlPlane {
    pub(crate) child: Child,
    pub(crate) api: String,
}

impl ControlPlane {
    pub(crate) fn start(manifest: &Path, state_dir: &Path) -> ControlPlane {
        Self::start_in(Path::new("."), manifest, state_dir)
    }

    /// Start in working directory `cwd`; `state_dir` may be relative to it.
    fn start_in(cwd: &Path, manifest: &Path, state_dir: &Path) -> ControlPlane {
        Self::start_at(cwd, manifest, state_dir, chainfleet_testkit::free_port())
    }

    /// Start with its API on `port`.
    fn start_at(cwd: &Path, manifest: &Path, state_dir: &Path, port: u16) -> ControlPlane {
        let log =
            std::fs::File::create(cwd.join(state_dir).with_extension(format!("cp-{port}.log")))
                .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_chainfleet"))
            .current_dir(cwd)
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

    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
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

    fn wait_nodes(
        &self,
        what: &str,
        mut check: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
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
    // A follower of the event stream, kept through the control plane's death.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_chainfleet"))
        .args(["events", "-f", "--json"])
        .env("CHAINFLEET_API", &first.api)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start events -f");
    let followed = {
        let stdout = follower.stdout.take().expect("follower stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    };
    for field in [
        "name",
        "instance",
        "replica",
        "chain",
        "state",
        "height",
        "best_hash",
        "peers",
        "pid",
    ] {
        assert!(nodes[0].get(field).is_some(), "status --json lacks {field}");
    }
    let before = pids(&nodes);
    assert_eq!(before.len(), 2);

    let table = first.cli(&["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("ltc-1") && table.contains("healthy"),
        "{table}"
    );
    let logs = first.cli(&["logs", "ltc-0", "--tail", "5"]);
    assert!(
        logs.status.success() && !logs.stdout.is_empty(),
        "logs: {logs:?}"
    );
    let unknown = first.cli(&["logs", "nope-0"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node is named `nope-0`"));

    // kill -9 the control plane: nodes keep running and are re-adopted.
    first.child.kill().expect("kill -9 control plane");
    first.child.wait().expect("reap");
    let state_str = state.to_string_lossy().to_string();
    assert_eq!(processes_mentioning(&format!("{state_str}/nodes/ltc-0")), 1);

    let port = first
        .api
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("api port");
    let second = ControlPlane::start_at(Path::new("."), &manifest, &state, port);
    let nodes = second.wait_nodes("re-adopted nodes", |n| {
        n.len() == 2 && n.iter().all(|x| x["state"] == "healthy")
    });
    assert_eq!(
        pids(&nodes),
        before,
        "pids changed: nodes were restarted, not adopted"
    );
    for node in ["ltc-0", "ltc-1"] {
        assert_eq!(
            processes_mentioning(&format!("{state_str}/nodes/{node}/")),
            1,
            "duplicate or missing process for {node}"
        );
    }
    let events = second.cli(&["events"]);
    assert!(String::from_utf8_lossy(&events.stdout).contains("re-adopted running pid"));
    // The follower reconnected by itself and saw the new control plane's events.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.contains("re-adopted running pid"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match followed.recv_timeout(left) {
            Ok(line) => {
                let event: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                assert!(event["id"].is_i64(), "{line}");
                seen.push(line);
            }
            Err(_) => panic!("events -f did not follow across the restart; saw {seen:#?}"),
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();

    let down = second.cli(&["down"]);
    assert!(down.status.success(), "{down:?}");
    assert!(String::from_utf8_lossy(&down.stdout).contains("stopped 2 nodes"));
    for pid in before {
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            status.is_empty() || status.contains(") Z"),
            "node pid {pid} still runs after down"
        );
    }
}

#[test]
fn kill_9_in_the_middle_of_reconciles_converges_without_duplicates() {
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
    replicas: 3
",
    )
    .expect("write manifest");
    let state = dir.path().join("state");
    // Kill the control plane at different points of its first reconciles.
    for delay_ms in [150u64, 400, 900] {
        let mut plane = ControlPlane::start(&manifest, &state);
        std::thread::sleep(Duration::from_millis(delay_ms));
        plane.child.kill().expect("kill -9");
        plane.child.wait().expect("reap");
    }
    let plane = ControlPlane::start(&manifest, &state);
    plane.wait_nodes("three healthy nodes", |n| {
        n.len() == 3 && n.iter().all(|x| x["state"] == "healthy")
    });
    let state_str = state.to_string_lossy().to_string();
    for node in ["ltc-0", "ltc-1", "ltc-2"] {
        assert_eq!(
            processes_mentioning(&format!("{state_str}/nodes/{node}/")),
            1,
            "{node} must run exactly once"
        );
    }
    let down = plane.cli(&["down"]);
    assert!(down.status.success(), "{down:?}");
}

/// Send raw bytes to the API and return the status code and body.
pub(crate) fn raw_http(api: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = api.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

pub(crate) fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[test]
fn the_api_rejects_hostile_requests_and_keeps_serving() {
    let dir = chainfleet_testkit::temp_dir();
    let manifest = dir.path().join("fleet.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\ninstances:\n  - name: ltc\n    chain: litecoin\n",
    )
    .expect("write manifest");
    // A relative state dir, as `make run` uses: nodes must still find their files.
    let plane = ControlPlane::start_in(dir.path(), &manifest, Path::new("state"));
    let nodes = plane.wait_nodes("one healthy node", |n| {
        n.len() == 1 && n[0]["state"] == "healthy"
    });
    let pid = nodes[0]["pid"].as_u64();

    let (status, body) = raw_http(&plane.api, &post("/v1/apply", b"instances: [\n"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid YAML"), "{body}");
    let (status, body) = raw_http(
        &plane.api,
        &post("/v1/apply", b"apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\ninstances:\n  - name: ltc\n    chain: litecoin\n    replicas: 0\n"),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("instances[0].replicas: must be at least 1 (line 6, column 15)"),
        "{body}"
    );
    let (status, body) = raw_http(&plane.api, &post("/v1/apply", &[0xff, 0xfe, b'a']));
    assert_eq!(status, 400);
    assert!(body.contains("not valid UTF-8"), "{body}");
    let huge = vec![b'a'; 3 * 1024 * 1024];
    let (status, _) = raw_http(&plane.api, &post("/v1/apply", &huge));
    assert_eq!(status, 413);
    let (status, _) = raw_http(
        &plane.api,
        b"GET /v1/nodes/%00%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status == 404 || status == 400, "status {status}");
    let (status, _) = raw_http(&plane.api, b"GARBAGE\r\n\r\n");
    assert!(status == 400 || status == 0, "status {status}");
    let (status, _) = raw_http(
        &plane.api,
        b"GET /v1/events?after=notanumber HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);

    // Nothing changed: same node, same pid, API still answers.
    let after = plane.nodes().expect("API still serves");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["pid"].as_u64(), pid);
    let down = plane.cli(&["down"]);
    assert!(down.status.success(), "{down:?}");
}
