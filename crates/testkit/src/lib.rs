//! Test helpers for Chainfleet: real daemons (litecoind, anvil, monerod) on
//! free loopback ports in temp dirs, killed when dropped.
//!
//! Test-only: a daemon that cannot start panics with its name and the tail
//! of its log. A missing binary fails the test; it never skips it.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
pub use tempfile::TempDir;

/// How long a daemon may take to answer RPC after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Times a daemon is restarted on fresh ports when it exits during startup
/// (another test may have taken a port between `free_port` and the bind).
const START_ATTEMPTS: usize = 3;

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"))
}

/// Two distinct free ports, held together while chosen so they differ.
pub fn free_ports() -> (u16, u16) {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"))
    };
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| {
        l.local_addr()
            .map(|addr| addr.port())
            .unwrap_or_else(|err| panic!("cannot read a bound port: {err}"))
    };
    (port(&a), port(&b))
}

/// The workspace's `.tools/bin`, where scripts/install.sh puts npm-installed tools.
pub fn tools_bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(".tools")
        .join("bin")
}

/// Where `name` is: on PATH first, then in [`tools_bin_dir`].
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::iter::once(tools_bin_dir()))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Like [`find_binary`], but fails the test with install advice when missing.
pub fn require_binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed (looked on PATH and in {}); run scripts/install.sh",
            tools_bin_dir().display()
        )
    })
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("chainfleet-test-")
        .tempdir()
        .unwrap_or_else(|err| panic!("cannot create a temp dir: {err}"))
}

/// How to tell that a daemon's RPC is up: a JSON-RPC call that must return a `result`.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// URL path of the JSON-RPC endpoint, e.g. `/` or `/json_rpc`.
    pub path: &'static str,
    /// Method to call; any answer with a non-null `result` means ready.
    pub method: &'static str,
}

/// Everything needed to start one daemon process.
#[derive(Debug)]
pub struct DaemonSpec {
    /// Short name for messages, e.g. `litecoind`.
    pub name: String,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments, exactly.
    pub args: Vec<String>,
    /// Its directory; stdout and stderr go to `daemon.log` in it.
    pub dir: TempDir,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// P2P port on 127.0.0.1 (0 when the daemon has none).
    pub p2p_port: u16,
    /// RPC user for basic auth (empty: no auth).
    pub rpc_user: String,
    /// RPC password for basic auth.
    pub rpc_password: String,
    /// The readiness call.
    pub ready: Readiness,
}

/// A running daemon, SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// Short name, e.g. `litecoind`.
    pub name: String,
    /// RPC port on 127.0.0.1.
    pub rpc_port: u16,
    /// P2P port on 127.0.0.1 (0 when the daemon has none).
    pub p2p_port: u16,
    /// `http://127.0.0.1:RPC_PORT`.
    pub rpc_url: String,
    /// RPC user (empty when the daemon takes no auth).
    pub rpc_user: String,
    /// RPC password.
    pub rpc_password: String,
    /// The daemon's own directory (data dir, logs).
    pub dir: PathBuf,
    /// Process id.
    pub pid: u32,
    log: PathBuf,
    child: Child,
    // An Option so `terminate` can hand the directory back for a restart.
    temp: Option<TempDir>,
}

impl Daemon {
    /// The last `lines` lines of the daemon's stdout and stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Wait up to `timeout` for the process to exit by itself.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Ok(None) => return None,
                Err(err) => panic!("cannot wait for {} (pid {}): {err}", self.name, self.pid),
            }
        }
    }

    /// Send SIGTERM, wait up to `timeout` (then SIGKILL), and keep the
    /// directory so a test can restart a daemon on the same data.
    pub async fn terminate(mut self, timeout: Duration) -> (Option<ExitStatus>, TempDir) {
        let pid = i32::try_from(self.pid)
            .unwrap_or_else(|_| panic!("pid {} of {} does not fit a pid_t", self.pid, self.name));
        // ESRCH only means it already exited; wait_for_exit tells.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let status = self.wait_for_exit(timeout).await;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self
            .temp
            .take()
            .unwrap_or_else(|| panic!("{} has no directory left", self.name));
        (status, dir)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Call one JSON-RPC method directly (not through Chainfleet) and return its `result`.
    pub async fn rpc(&self, path: &str, method: &str, params: Value) -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        match post(
            &self.rpc_url,
            path,
            &self.rpc_user,
            &self.rpc_password,
            &body,
        )
        .await
        {
            Ok(answer) => match answer.get("result") {
                Some(result) if answer.get("error").is_none_or(Value::is_null) => result.clone(),
                _ => panic!("{} answered `{method}` with an error: {answer}", self.name),
            },
            Err(err) => panic!(
                "{} did not answer `{method}`: {err}\n--- log tail ---\n{}",
                self.name,
                self.log_tail(30)
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Std's kill is SIGKILL; wait reaps it so no zombie outlives the test.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a daemon from an exact spec and wait until its RPC answers.
pub async fn start(spec: DaemonSpec) -> Daemon {
    match try_start(spec).await {
        Ok(daemon) => daemon,
        Err(failure) => panic!("{failure}"),
    }
}

/// Start a daemon, or say why it did not come up (with its log tail).
async fn try_start(spec: DaemonSpec) -> Result<Daemon, String> {
    let log = spec.dir.path().join("daemon.log");
    let out =
        File::create(&log).map_err(|err| format!("cannot create {}: {err}", log.display()))?;
    let err_out = out
        .try_clone()
        .map_err(|err| format!("cannot clone a log handle: {err}"))?;
    let child = Command::new(&spec.program)
        .args(&spec.args)
        .current_dir(spec.dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err_out)
        .spawn()
        .map_err(|err| {
            format!(
                "cannot start {} ({}): {err}",
                spec.name,
                spec.program.display()
            )
        })?;
    let mut daemon = Daemon {
        name: spec.name,
        rpc_port: spec.rpc_port,
        p2p_port: spec.p2p_port,
        rpc_url: format!("http://127.0.0.1:{}", spec.rpc_port),
        rpc_user: spec.rpc_user,
        rpc_password: spec.rpc_password,
        dir: spec.dir.path().to_path_buf(),
        pid: child.id(),
        log,
        child,
        temp: Some(spec.dir),
    };
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": spec.ready.method, "params": []});
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            return Err(format!(
                "{} exited during startup ({status}) with args {:?}\n--- log tail ---\n{}",
                daemon.name,
                spec.args,
                daemon.log_tail(40)
            ));
        }
        let last = match post(
            &daemon.rpc_url,
            spec.ready.path,
            &daemon.rpc_user,
            &daemon.rpc_password,
            &body,
        )
        .await
        {
            Ok(answer) if answer.get("result").is_some_and(|r| !r.is_null()) => return Ok(daemon),
            Ok(answer) => format!("answered {answer}"),
            Err(err) => err,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not answer `{}` on {} within {START_TIMEOUT:?} (last: {last})\n--- log tail ---\n{}",
                daemon.name,
                spec.ready.method,
                daemon.rpc_url,
                daemon.log_tail(40)
            ));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Start a daemon whose args are built from fresh ports and a fresh dir,
/// retrying on new ports if it exits during startup.
async fn start_fresh(build: impl Fn(u16, u16, TempDir) -> DaemonSpec) -> Daemon {
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let (rpc, p2p) = free_ports();
        let spec = build(rpc, p2p, temp_dir());
        let exited_early = |failure: &str| failure.contains("exited during startup");
        match try_start(spec).await {
            Ok(daemon) => return daemon,
            Err(failure) if exited_early(&failure) => failures.push(failure),
            Err(failure) => panic!("{failure}"),
        }
    }
    panic!(
        "daemon did not start in {START_ATTEMPTS} attempts:\n{}",
        failures.join("\n\n")
    );
}

/// A password that differs between daemons of one run.
fn password(port: u16) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("pw{port}x{nanos}")
}

/// A `litecoind -regtest` node with an empty chain.
pub async fn litecoind() -> Daemon {
    litecoind_with(&[]).await
}

/// A `litecoind -regtest` node with extra args (e.g. `-connect=127.0.0.1:PORT` to peer).
pub async fn litecoind_with(args: &[String]) -> Daemon {
    let program = require_binary("litecoind");
    let extra = args.to_vec();
    start_fresh(move |rpc, p2p, dir| {
        let pass = password(rpc);
        let path = dir.path();
        let mut all = vec![
            "-regtest".to_string(),
            format!("-datadir={}", path.display()),
            "-server=1".into(),
            format!("-rpcport={rpc}"),
            "-rpcbind=127.0.0.1".into(),
            "-rpcallowip=127.0.0.1".into(),
            "-rpcuser=chainfleet".into(),
            format!("-rpcpassword={pass}"),
            format!("-port={p2p}"),
            "-bind=127.0.0.1".into(),
            "-listen=1".into(),
            "-listenonion=0".into(),
            "-dnsseed=0".into(),
            "-printtoconsole=1".into(),
            "-nodebuglogfile".into(),
            "-fallbackfee=0.0002".into(),
        ];
        all.extend(extra.iter().cloned());
        DaemonSpec {
            name: "litecoind".into(),
            program: program.clone(),
            args: all,
            dir,
            rpc_port: rpc,
            p2p_port: p2p,
            rpc_user: "chainfleet".into(),
            rpc_password: pass,
            ready: Readiness {
                path: "/",
                method: "getblockchaininfo",
            },
        }
    })
    .await
}

/// An `anvil` devnet node (automining on each transaction, chain id 31337).
pub async fn anvil() -> Daemon {
    let program = require_binary("anvil");
    start_fresh(move |rpc, _p2p, dir| DaemonSpec {
        name: "anvil".into(),
        program: program.clone(),
        args: vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            rpc.to_string(),
            "--chain-id".into(),
            "31337".into(),
        ],
        dir,
        rpc_port: rpc,
        p2p_port: 0,
        rpc_user: String::new(),
        rpc_password: String::new(),
        ready: Readiness {
            path: "/",
            method: "eth_chainId",
        },
    })
    .await
}

/// A `monerod --regtest --offline` node (fixed difficulty 1). Takes a few seconds.
pub async fn monerod() -> Daemon {
    monerod_with(&["--offline".to_string()]).await
}

/// A `monerod --regtest` node with extra args (e.g. `--add-exclusive-node` to peer).
pub async fn monerod_with(args: &[String]) -> Daemon {
    let program = require_binary("monerod");
    let extra = args.to_vec();
    start_fresh(move |rpc, p2p, dir| {
        let path = dir.path().to_path_buf();
        let mut all: Vec<String> = [
            "--regtest",
            "--fixed-difficulty",
            "1",
            "--non-interactive",
            "--no-igd",
            "--no-zmq",
            "--disable-dns-checkpoints",
            "--check-updates",
            "disabled",
            "--rpc-ssl",
            "disabled",
            "--rpc-bind-ip",
            "127.0.0.1",
            "--p2p-bind-ip",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        all.extend([
            "--data-dir".into(),
            path.display().to_string(),
            "--log-file".into(),
            path.join("monerod.log").display().to_string(),
            "--rpc-bind-port".into(),
            rpc.to_string(),
            "--p2p-bind-port".into(),
            p2p.to_string(),
        ]);
        all.extend(extra.iter().cloned());
        DaemonSpec {
            name: "monerod".into(),
            program: program.clone(),
            args: all,
            dir,
            rpc_port: rpc,
            p2p_port: p2p,
            rpc_user: String::new(),
            rpc_password: String::new(),
            ready: Readiness {
                path: "/json_rpc",
                method: "get_info",
            },
        }
    })
    .await
}

/// POST a JSON body and parse the JSON answer (any HTTP status).
async fn post(
    url: &str,
    path: &str,
    user: &str,
    password: &str,
    body: &Value,
) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|err| format!("cannot build an HTTP client: {err}"))?;
    let mut request = client.post(format!("{url}{path}")).json(body);
    if !user.is_empty() {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.map_err(|err| err.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|err| err.to_string())?;
    serde_json::from_str(&text).map_err(|_| {
        format!(
            "HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        )
    })
}

/// The last `lines` lines of a file, or a note that it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_differ() {
        let (a, b) = free_ports();
        assert_ne!(a, b);
        assert_ne!(free_port(), 0);
    }

    #[test]
    fn tools_bin_dir_is_in_the_workspace() {
        let dir = tools_bin_dir();
        assert!(dir.ends_with(".tools/bin"), "{}", dir.display());
        assert!(dir.join("../../Cargo.toml").is_file(), "{}", dir.display());
    }

    #[test]
    fn find_binary_looks_on_path() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-chainfleet").is_none());
    }

    #[test]
    #[should_panic(expected = "run scripts/install.sh")]
    fn a_missing_binary_fails_with_install_advice() {
        require_binary("no-such-daemon-chainfleet");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = temp_dir();
        let file = dir.path().join("log");
        std::fs::write(&file, "a\nb\nc\n").expect("write the log");
        assert_eq!(tail(&file, 2), "b\nc");
        assert_eq!(tail(&file, 10), "a\nb\nc");
    }
}

/// A supporting HTTP service (Prometheus, Alertmanager) on a free loopback
/// port in a temp dir, SIGKILLed when dropped.
#[derive(Debug)]
pub struct Service {
    /// Short name, e.g. `prometheus`.
    pub name: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its directory (config, data, `service.log`).
    pub dir: TempDir,
    child: Child,
}

impl Service {
    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.path().join("service.log"), lines)
    }

    /// GET `path` and parse the JSON answer, or say why not.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|err| err.to_string())?;
        let response = client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|err| err.to_string())?;
        if !status.is_success() {
            return Err(format!("HTTP {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|err| format!("{err}: {text}"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `program` with `args(port, dir)` and wait until `GET /-/ready` answers 200.
async fn start_service(
    name: &str,
    program: &str,
    files: &[(&str, String)],
    args: impl Fn(u16, &Path) -> Vec<String>,
) -> Service {
    let binary = require_binary(program);
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        let dir = temp_dir();
        for (file, contents) in files {
            let path = dir.path().join(file);
            std::fs::write(&path, contents)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        }
        let port = free_port();
        let log = dir.path().join("service.log");
        let out = File::create(&log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        let err_out = out
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot clone a log handle: {err}"));
        let child = Command::new(&binary)
            .args(args(port, dir.path()))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err_out)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name} ({}): {err}", binary.display()));
        let mut service = Service {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|err| panic!("cannot build an HTTP client: {err}"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = service.child.try_wait() {
                failures.push(format!(
                    "{name} exited during startup ({status})\n--- log tail ---\n{}",
                    service.log_tail(30)
                ));
                break;
            }
            let ready = client
                .get(format!("{}/-/ready", service.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return service;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name} did not become ready on {} within {START_TIMEOUT:?}\n--- log tail ---\n{}",
                    service.url,
                    service.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!(
        "{name} did not start in {START_ATTEMPTS} attempts:\n{}",
        failures.join("\n\n")
    );
}

/// A real Prometheus (Debian `prometheus`) scraping `target` (`HOST:PORT`,
/// path `/metrics`) every `scrape_interval` (e.g. `1s`), with
/// `honor_labels: true` so Chainfleet's `instance` label is kept.
pub async fn prometheus(target: &str, scrape_interval: &str) -> Service {
    let config = format!(
        "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs:\n  - job_name: chainfleet\n    honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
    );
    start_service(
        "prometheus",
        "prometheus",
        &[("prometheus.yml", config)],
        |port, dir| {
            vec![
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
    )
    .await
}

/// A real Alertmanager (Debian `prometheus-alertmanager`), clustering off.
pub async fn alertmanager() -> Service {
    let config = "route:\n  receiver: none\nreceivers:\n  - name: none\n".to_string();
    start_service(
        "alertmanager",
        "prometheus-alertmanager",
        &[("alertmanager.yml", config)],
        |port, dir| {
            vec![
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".to_string(),
            ]
        },
    )
    .await
}
