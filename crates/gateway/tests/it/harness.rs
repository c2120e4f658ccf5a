//! A gateway on a free port in front of real daemons, with a hand-fed upstream snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chainfleet_chains::Endpoint;
use chainfleet_control::{NodeStatus, Upstream, UpstreamSnapshot};
use chainfleet_gateway::keys::{KeyStore, NewKey};
use chainfleet_gateway::{AccessMap, Gateway, GatewayOptions};
use chainfleet_spec::access::Access;
use chainfleet_spec::Chain;
use chainfleet_testkit::Daemon;
use serde_json::{json, Value};
use tokio::sync::watch;

/// A running gateway and what feeds it.
pub struct TestGateway {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub dir: tempfile::TempDir,
    pub gateway: Gateway,
    pub upstreams: watch::Sender<Arc<UpstreamSnapshot>>,
    pub access: watch::Sender<Arc<AccessMap>>,
    pub http: reqwest::Client,
    shutdown: watch::Sender<bool>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A node status as the control plane would publish it.
pub fn status(instance: &str, replica: u32, state: &str, port: u16) -> NodeStatus {
    NodeStatus {
        name: format!("{instance}-{replica}"),
        instance: instance.into(),
        replica,
        network: "regtest".into(),
        role: "full".into(),
        state: state.into(),
        height: Some(0),
        lag: Some(0),
        rpc_port: port,
        ..NodeStatus::default()
    }
}

/// The upstream of a real daemon, healthy.
pub fn upstream(instance: &str, replica: u32, chain: Chain, daemon: &Daemon) -> Upstream {
    let mut endpoint = Endpoint::local(daemon.rpc_port);
    if !daemon.rpc_user.is_empty() {
        endpoint.basic_auth = Some((daemon.rpc_user.clone(), daemon.rpc_password.clone()));
    }
    Upstream {
        status: status(instance, replica, "healthy", daemon.rpc_port),
        chain,
        endpoint,
    }
}

/// `upstream` reporting its head at `height`.
pub fn at_height(mut upstream: Upstream, height: u64) -> Upstream {
    upstream.status.height = Some(height);
    upstream
}

pub fn snapshot(upstreams: Vec<Upstream>) -> Arc<UpstreamSnapshot> {
    Arc::new(UpstreamSnapshot {
        generated_ms: 1,
        upstreams,
    })
}

impl TestGateway {
    /// Start a gateway with these upstreams and access sections.
    pub async fn start(upstreams: Vec<Upstream>, access: AccessMap) -> TestGateway {
        Self::start_with(upstreams, access, |_| {}).await
    }

    /// Start with adjusted options.
    pub async fn start_with(
        upstreams: Vec<Upstream>,
        access: AccessMap,
        adjust: impl FnOnce(&mut GatewayOptions),
    ) -> TestGateway {
        let dir = chainfleet_testkit::temp_dir();
        let mut options = GatewayOptions::new(dir.path());
        options.upstream_timeout = Duration::from_secs(5);
        adjust(&mut options);
        let (upstreams_tx, upstreams_rx) = watch::channel(snapshot(upstreams));
        let (access_tx, access_rx) = watch::channel(Arc::new(access));
        let gateway = Gateway::start(options, upstreams_rx, access_rx).expect("gateway starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, shutdown_rx) = watch::channel(false);
        {
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.serve(listener, shutdown_rx).await });
        }
        TestGateway {
            url: format!("http://{addr}"),
            addr,
            dir,
            gateway,
            upstreams: upstreams_tx,
            access: access_tx,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            shutdown,
        }
    }

    /// Publish a snapshot and wait until the gateway routes `instance` at best height `best`.
    pub async fn publish(&self, upstreams: Vec<Upstream>, instance: &str, best: u64) {
        self.upstreams
            .send(snapshot(upstreams))
            .expect("the gateway follows the snapshot");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.gateway.best_height(instance) != Some(best) {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway did not take best height {best} for `{instance}` (has {:?})",
                self.gateway.best_height(instance)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Create a key directly in the gateway's key database.
    pub fn key(&self, new: NewKey) -> (String, String) {
        let mut store = KeyStore::open(self.dir.path()).expect("key store");
        let created = store.create(new, |_| true).expect("create key");
        self.gateway.refresh_keys().expect("reload keys");
        (created.key, created.info.id)
    }

    /// A read-only key for `instance`.
    pub fn read_key(&self, instance: &str) -> String {
        self.key(NewKey {
            instance: instance.into(),
            ..NewKey::default()
        })
        .0
    }

    /// Revoke a key by id.
    pub fn revoke(&self, id: &str) {
        let mut store = KeyStore::open(self.dir.path()).expect("key store");
        assert!(store.revoke(id).expect("revoke"));
    }

    /// POST a raw body with a bearer key; returns status, headers and body text.
    pub async fn post_raw(
        &self,
        path: &str,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, headers, text)
    }

    /// POST JSON and parse the JSON answer.
    pub async fn post(&self, instance: &str, key: &str, body: Value) -> (u16, Value) {
        let (status, _, text) = self
            .post_raw(&format!("/rpc/{instance}"), Some(key), body.to_string())
            .await;
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("gateway answered non-JSON ({err}): {text}"));
        (status, value)
    }

    /// Call one method and return the whole answer object.
    pub async fn call(
        &self,
        instance: &str,
        key: &str,
        method: &str,
        params: Value,
    ) -> (u16, Value) {
        self.post(
            instance,
            key,
            json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
        )
        .await
    }

    /// The value of a metric line starting with `prefix` (summed over matches).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// An access map with one instance's section.
pub fn access(instance: &str, access: Access) -> AccessMap {
    HashMap::from([(instance.to_string(), access)])
}

/// Access allowing `allow` and denying `deny`, other settings default.
pub fn rules(allow: &[&str], deny: &[&str]) -> Access {
    Access {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
        ..Access::default()
    }
}
