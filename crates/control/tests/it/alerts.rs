//! Health and alerts against real daemons: stall, lag, down, a real fork,
//! a webhook receiver, a real Prometheus and a real Alertmanager, and the
//! shipped Prometheus rules under promtool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chainfleet_control::alerts::{Alert, AlertStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fleet::{litecoin_cli, mine, node, TestFleet};

/// A tiny HTTP server that records every JSON body POSTed to it.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::start_with(None).await
    }

    /// A receiver that speaks HTTPS with `tls` (its URL names `localhost`).
    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let port = listener.local_addr().expect("address").port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/hook"),
            None => format!("http://127.0.0.1:{port}/hook"),
        };
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let store = bodies.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(socket) = acceptor.accept(socket).await {
                                record_one(socket, store).await;
                            }
                        }
                        None => record_one(socket, store).await,
                    }
                });
            }
        });
        Receiver { url, bodies, task }
    }

    /// The alert bodies received so far.
    fn alerts(&self) -> Vec<Alert> {
        self.bodies
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|b| serde_json::from_value(b.get("alert")?.clone()).ok())
            .collect()
    }

    async fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&Alert) -> bool) -> Alert {
        let start = Instant::now();
        loop {
            if let Some(found) = self.alerts().into_iter().find(|a| check(a)) {
                return found;
            }
            assert!(
                start.elapsed() < limit,
                "webhook did not receive {what} within {limit:?}; got {:#?}",
                self.alerts()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Read one POST, keep its JSON body, answer 200.
async fn record_one<S>(mut socket: S, store: Arc<Mutex<Vec<Value>>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let Ok(n) = socket.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buffer).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            break buffer[end + 4..end + 4 + length].to_vec();
        }
    };
    if let Ok(value) = serde_json::from_slice::<Value>(&body) {
        store.lock().expect("lock").push(value);
    }
    let _ = socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await;
    let _ = socket.shutdown().await;
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn is(alert: &Alert, id: &str, status: AlertStatus) -> bool {
    alert.id == id && alert.status == status
}

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("signal the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_lag_and_down_reach_the_webhook_firing_and_resolved() {
    let hook = Receiver::start().await;
    let fleet = TestFleet::start(&format!(
        "alerting:
  rules:
    lagging: {{warning: 2, critical: 1000, for: 1s}}
  channels:
    - {{type: webhook, url: '{}'}}
instances:
  - name: prod
    chain: litecoin
    role: producer
    production: {{blockInterval: 1s}}
  - name: fol
    chain: litecoin
    peers: [prod]
",
        hook.url
    ))
    .await;
    let state = fleet.state_dir();
    fleet
        .wait_for(
            "producer and follower healthy at height 3",
            Duration::from_secs(90),
            |s| {
                s.nodes.len() == 2
                    && s.nodes
                        .iter()
                        .all(|n| n.health == "healthy" && n.height.unwrap_or(0) >= 3)
            },
        )
        .await;

    // Cut the follower off: its head stops (stalled) while the producer goes on (lagging).
    litecoin_cli(&state, "fol-0", &["setnetworkactive", "false"]);
    hook.wait_for("stalled fol-0", Duration::from_secs(30), |a| {
        is(a, "stalled/fol-0", AlertStatus::Firing)
    })
    .await;
    hook.wait_for("lagging fol-0", Duration::from_secs(30), |a| {
        is(a, "lagging/fol-0", AlertStatus::Firing)
    })
    .await;
    let snapshot = fleet
        .wait_for("fol-0 stalled or lagging", Duration::from_secs(10), |s| {
            matches!(node(s, "fol-0").health.as_str(), "stalled" | "lagging")
        })
        .await;
    assert!(node(&snapshot, "prod-0").lag == Some(0), "{snapshot:#?}");

    // Reconnect: it catches up, and both alerts resolve.
    litecoin_cli(&state, "fol-0", &["setnetworkactive", "true"]);
    for id in ["stalled/fol-0", "lagging/fol-0"] {
        hook.wait_for(&format!("{id} resolved"), Duration::from_secs(60), |a| {
            is(a, id, AlertStatus::Resolved)
        })
        .await;
    }

    // Freeze the producer: down within two probe intervals (bound generously).
    let pid = node(&fleet.controller.snapshot(), "prod-0")
        .pid
        .expect("pid");
    signal(pid, Signal::SIGSTOP);
    let frozen = Instant::now();
    hook.wait_for("nodeDown prod-0", Duration::from_secs(15), |a| {
        is(a, "nodeDown/prod-0", AlertStatus::Firing)
    })
    .await;
    let detected = frozen.elapsed();
    signal(pid, Signal::SIGCONT);
    hook.wait_for("nodeDown prod-0 resolved", Duration::from_secs(30), |a| {
        is(a, "nodeDown/prod-0", AlertStatus::Resolved)
    })
    .await;
    let events = fleet.controller.events_after(0, 10_000).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "alert-firing" && e.message.contains("nodeDown")),
        "alert transitions are recorded as events: {events:#?}"
    );
    eprintln!("nodeDown detected {detected:?} after SIGSTOP");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_fork_is_flagged_on_the_minority() {
    let fleet = TestFleet::start(
        "instances:
  - name: ltc
    chain: litecoin
    replicas: 3
    # Out of initial block download from the start, so every node syncs
    # from whichever peer has blocks (in IBD a node picks one sync peer).
    client: {args: ['-maxtipage=1000000000']}
",
    )
    .await;
    let state = fleet.state_dir();
    fleet
        .wait_for("three peered nodes", Duration::from_secs(90), |s| {
            s.nodes.len() == 3 && s.nodes.iter().all(|n| n.peers.unwrap_or(0) >= 1)
        })
        .await;
    mine(&state, "ltc-0", 3);
    fleet
        .wait_for("all at height 3", Duration::from_secs(30), |s| {
            s.nodes.iter().all(|n| n.height == Some(3))
        })
        .await;
    // ltc-2 leaves the network and mines its own chain; the majority mines another.
    litecoin_cli(&state, "ltc-2", &["setnetworkactive", "false"]);
    fleet
        .wait_for("ltc-2 without peers", Duration::from_secs(30), |s| {
            node(s, "ltc-2").peers == Some(0)
        })
        .await;
    // Another payout script, so its blocks differ from the majority's even
    // when both mine on the same parent within the same second.
    litecoin_cli(&state, "ltc-2", &["generatetodescriptor", "2", "raw(52)"]);
    mine(&state, "ltc-0", 4);
    let split = Instant::now();
    let snapshot = fleet
        .wait_for("forked alert on ltc-2", Duration::from_secs(30), |s| {
            s.alerts
                .iter()
                .any(|a| is(a, "forked/ltc-2", AlertStatus::Firing))
        })
        .await;
    eprintln!("fork flagged {:?} after the split", split.elapsed());
    assert_eq!(node(&snapshot, "ltc-2").health, "forked", "{snapshot:#?}");
    for majority in ["ltc-0", "ltc-1"] {
        assert!(!node(&snapshot, majority).forked, "{snapshot:#?}");
        assert!(
            !snapshot
                .alerts
                .iter()
                .any(|a| a.id == format!("forked/{majority}")),
            "{:#?}",
            snapshot.alerts
        );
    }
    // Back on the network, ltc-2 reorganizes to the longer chain.
    litecoin_cli(&state, "ltc-2", &["setnetworkactive", "true"]);
    fleet
        .wait_for("fork resolved", Duration::from_secs(60), |s| {
            s.alerts
                .iter()
                .any(|a| is(a, "forked/ltc-2", AlertStatus::Resolved))
                && !node(s, "ltc-2").forked
        })
        .await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_heights_and_alertmanager_gets_the_push() {
    let alertmanager = chainfleet_testkit::alertmanager().await;
    // A disk threshold of 0% fires at once: a deterministic alert to push.
    let fleet = TestFleet::start(&format!(
        "alerting:
  rules:
    diskFull: {{warning: 0, for: 0s}}
  channels:
    - {{type: alertmanager, url: '{}'}}
instances:
  - {{name: ltc, chain: litecoin}}
",
        alertmanager.url
    ))
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the API");
    let api = listener.local_addr().expect("address");
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let router = chainfleet_api::router(fleet.controller.clone(), Arc::new(shutdown));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    fleet
        .wait_for("ltc-0 healthy", Duration::from_secs(90), |s| {
            s.nodes.first().is_some_and(|n| n.health == "healthy")
        })
        .await;
    mine(&fleet.state_dir(), "ltc-0", 2);

    // Prometheus scrapes /metrics; its query returns the node's height.
    let prometheus = chainfleet_testkit::prometheus(&api.to_string(), "1s").await;
    let start = Instant::now();
    loop {
        let answer = prometheus
            .get_json("/api/v1/query?query=chainfleet_node_height")
            .await;
        let height = answer.as_ref().ok().and_then(|v| {
            v["data"]["result"]
                .as_array()?
                .iter()
                .find(|r| r["metric"]["instance"] == "ltc")
                .and_then(|r| r["value"][1].as_str().map(str::to_string))
        });
        if height.as_deref() == Some("2") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus did not return height 2 for ltc: {answer:?}\n{}",
            prometheus.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Alertmanager holds the pushed alert.
    let start = Instant::now();
    loop {
        let answer = alertmanager.get_json("/api/v2/alerts").await;
        let found = answer
            .as_ref()
            .ok()
            .and_then(Value::as_array)
            .is_some_and(|list| {
                list.iter().any(|a| {
                    a["labels"]["alertname"] == "ChainfleetDiskFull"
                        && a["labels"]["node"] == "ltc-0"
                })
            });
        if found {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Alertmanager did not receive the alert: {answer:?}\n{}",
            alertmanager.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The API lists it, `alerts test` reaches Alertmanager, and events stream as SSE.
    let http = reqwest::Client::new();
    let alerts: Vec<Alert> = http
        .get(format!("http://{api}/v1/alerts"))
        .send()
        .await
        .expect("GET /v1/alerts")
        .json()
        .await
        .expect("alerts JSON");
    assert!(
        alerts.iter().any(|a| a.id == "diskFull/ltc-0"),
        "{alerts:#?}"
    );
    let results: Value = http
        .post(format!("http://{api}/v1/alerts/test"))
        .send()
        .await
        .expect("POST /v1/alerts/test")
        .json()
        .await
        .expect("test JSON");
    assert_eq!(results[0]["ok"], true, "{results}");
    let mut stream = http
        .get(format!("http://{api}/v1/events?after=0"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /v1/events as SSE");
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("an event within 10 s")
        .expect("read the stream")
        .expect("a chunk");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("id: ") && text.contains("data: {"), "{text}");
    server.abort();
    fleet.stop().await;
}

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

fn promtool(args: &[&str]) {
    let program = chainfleet_testkit::require_binary("promtool");
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(rules_dir())
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn shipped_rules_pass_promtool_check_and_unit_tests() {
    promtool(&["check", "rules", "chainfleet-rules.yml"]);
    promtool(&["test", "rules", "chainfleet-rules.test.yml"]);
}

/// Every query of the shipped Grafana dashboard is valid PromQL: each becomes
/// a recording rule that `promtool check rules` parses.
#[test]
fn shipped_dashboard_queries_are_valid_promql() {
    let path = rules_dir().join("../grafana/chainfleet-fleet.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 20, "only {} queries found", exprs.len());
    assert!(
        exprs.iter().any(|e| e.contains("chainfleet_gateway_")),
        "no gateway panel"
    );
    // Grafana fills $instance in; any regex stands in for it here.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr.replace("$instance", ".+")})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = chainfleet_testkit::temp_dir();
    let rules_file = dir.path().join("dashboard-rules.yml");
    // JSON is YAML, which promtool reads.
    std::fs::write(&rules_file, file.to_string()).expect("write the rules");
    let output = std::process::Command::new(chainfleet_testkit::require_binary("promtool"))
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "a dashboard query is not valid PromQL:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarted_from_an_empty_data_dir_lags_then_recovers() {
    let fleet = TestFleet::start(
        "alerting:
  rules:
    lagging: {warning: 5, critical: 100000, for: 0s}
instances:
  - name: prod
    chain: litecoin
    role: producer
    production: {blockInterval: 1s}
  - name: fol
    chain: litecoin
    peers: [prod]
",
    )
    .await;
    let state = fleet.state_dir();
    fleet
        .wait_for("both healthy", Duration::from_secs(90), |s| {
            s.nodes.len() == 2 && s.nodes.iter().all(|n| n.health == "healthy")
        })
        .await;
    // A chain long enough that re-syncing it from nothing takes a few probe
    // rounds; the producer group is fenced meanwhile so two miners do not race.
    fleet.controller.fence("prod", true).await.expect("fence");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    mine(&state, "prod-0", 2000);
    fleet
        .controller
        .fence("prod", false)
        .await
        .expect("unfence");
    let synced = fleet
        .wait_for(
            "the follower at the producer's height",
            Duration::from_secs(120),
            |s| {
                let prod = node(s, "prod-0").height.unwrap_or(0);
                prod >= 2000 && node(s, "fol-0").height == Some(prod)
            },
        )
        .await;
    let old_pid = node(&synced, "fol-0").pid.expect("pid");
    // kill -9 and wipe its chain before the supervisor restarts it (back-off 1 s).
    signal(old_pid, Signal::SIGKILL);
    std::fs::remove_dir_all(state.join("nodes").join("fol-0").join("regtest"))
        .expect("remove the follower's chain");
    let lagging = fleet
        .wait_for(
            "the restarted follower lagging",
            Duration::from_secs(60),
            |s| {
                s.alerts
                    .iter()
                    .any(|a| is(a, "lagging/fol-0", AlertStatus::Firing))
            },
        )
        .await;
    let restarted = node(&lagging, "fol-0");
    assert_ne!(
        restarted.pid,
        Some(old_pid),
        "the follower was not restarted"
    );
    assert!(restarted.lag.unwrap_or(0) >= 5, "{restarted:#?}");
    fleet
        .wait_for("the follower recovered", Duration::from_secs(120), |s| {
            node(s, "fol-0").lag == Some(0)
                && s.alerts
                    .iter()
                    .all(|a| !is(a, "lagging/fol-0", AlertStatus::Firing))
        })
        .await;
    fleet.stop().await;
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`, and
/// that certificate as PEM (the CA a channel's `caFile` names).
fn self_signed() -> (tokio_rustls::TlsAcceptor, String) {
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server TLS config");
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        certified.cert.pem(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_channels_check_the_certificate_and_trust_their_ca_file() {
    use chainfleet_control::notify::Notifier;
    use chainfleet_spec::alerting::Channel;

    let (acceptor, ca_pem) = self_signed();
    let receiver = Receiver::start_with(Some(acceptor)).await;
    let dir = chainfleet_testkit::temp_dir();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write the CA");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let webhook = |name: &str, ca_file: Option<&std::path::Path>| Channel::Webhook {
        url: receiver.url.clone(),
        name: Some(name.into()),
        ca_file: ca_file.map(|p| p.display().to_string()),
    };
    let results = Notifier::new(
        vec![
            webhook("trusted", Some(&ca_file)),
            webhook("untrusted", None),
            webhook("bad-ca", Some(&garbage)),
            webhook("missing-ca", Some(&dir.path().join("nope.pem"))),
        ],
        "tls-test".into(),
    )
    .send_test()
    .await;
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r.channel == name)
            .unwrap_or_else(|| panic!("no result for {name}: {results:?}"))
    };
    assert!(by_name("trusted").ok, "{results:?}");
    let received = receiver.bodies.lock().expect("lock").clone();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0]["kind"], "test");
    let untrusted = by_name("untrusted");
    assert!(!untrusted.ok);
    let error = untrusted.error.clone().unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    let bad = by_name("bad-ca").error.clone().unwrap_or_default();
    assert!(
        bad.contains("garbage.pem") && bad.contains("no PEM certificate"),
        "{bad}"
    );
    let missing = by_name("missing-ca").error.clone().unwrap_or_default();
    assert!(missing.contains("nope.pem"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_pages_through_a_long_backlog_without_gaps() {
    use chainfleet_control::store::Store;
    use chainfleet_control::{Controller, ControllerOptions};

    let dir = chainfleet_testkit::temp_dir();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    {
        let store = Store::open(&state.join("state.db")).expect("store");
        for i in 0..2500 {
            store
                .add_event(None, "test", &format!("event {i}"))
                .expect("add event");
        }
    }
    let controller = Controller::open(
        ControllerOptions::new(&state),
        Arc::new(chainfleet_runtime::ProcessRuntime::new()),
    )
    .expect("open controller");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the API");
    let api = listener.local_addr().expect("address");
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let router = chainfleet_api::router(controller.clone(), Arc::new(shutdown));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut stream = reqwest::Client::new()
        .get(format!("http://{api}/v1/events?after=0"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("GET /v1/events as SSE");
    let mut ids: Vec<i64> = Vec::new();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.len() < 2500 {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("the stream stopped after {} events", ids.len()))
            .expect("read the stream")
            .expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if let Some(id) = frame
                .lines()
                .find_map(|l| l.strip_prefix("id: ")?.parse::<i64>().ok())
            {
                ids.push(id);
            }
        }
    }
    let expected: Vec<i64> = (1..=ids.len() as i64).collect();
    assert_eq!(ids, expected, "events missing or out of order");
    server.abort();
}
