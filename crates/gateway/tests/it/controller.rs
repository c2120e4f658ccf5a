//! The gateway fed by a real control plane: its upstream snapshots and manifest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainfleet_control::{Controller, ControllerOptions};
use chainfleet_gateway::keys::{KeyStore, NewKey};
use chainfleet_gateway::{Gateway, GatewayOptions};
use chainfleet_runtime::ProcessRuntime;
use serde_json::{json, Value};
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_fleet_is_served_with_its_manifest_policy() {
    let anvil = chainfleet_testkit::require_binary("anvil");
    let dir = chainfleet_testkit::temp_dir();
    let text = format!(
        "apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\nsettings: {{probeInterval: 500ms}}\ninstances:\n  - name: eth\n    chain: ethereum\n    client: {{binary: {}}}\n    access: {{allow: [read], deny: [eth_getBalance]}}\n",
        anvil.display()
    );
    let manifest = chainfleet_spec::parse(&text, "test.yaml").expect("valid manifest");
    let state = dir.path().join("state");
    let mut options = ControllerOptions::new(&state);
    options.reconcile_interval = Duration::from_millis(250);
    let controller =
        Controller::open(options, Arc::new(ProcessRuntime::new())).expect("open controller");
    controller.apply(manifest).expect("apply");
    let (stop_tx, stop_rx) = watch::channel(false);
    let loops = {
        let controller = controller.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move { controller.run(rx).await })
    };
    let access = {
        let controller = controller.clone();
        chainfleet_gateway::watch_manifest(
            move || controller.manifest_text(),
            Duration::from_millis(200),
        )
    };
    let (gateway, url) = serve(
        controller.state_dir(),
        (controller.upstreams(), access),
        stop_rx.clone(),
    )
    .await;
    let key = KeyStore::open(controller.state_dir())
        .expect("keys")
        .create(
            NewKey {
                instance: "eth".into(),
                ..NewKey::default()
            },
            |_| true,
        )
        .expect("key")
        .key;
    gateway.refresh_keys().expect("reload");
    let http = reqwest::Client::new();
    let call = |method: &str| {
        http.post(&url)
            .bearer_auth(&key)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}))
            .send()
    };
    // Until the first probe round marks the node healthy the gateway says 503 (or 404).
    let started = Instant::now();
    let answer: Value = loop {
        let response = call("eth_chainId").await.expect("gateway answers");
        if response.status() == 200 {
            break response.json().await.expect("json");
        }
        assert!(
            [503, 404].contains(&response.status().as_u16()),
            "unexpected {}",
            response.status()
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fleet never became routable"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(answer["result"], "0x7a69");
    let denied: Value = call("eth_getBalance")
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(
        denied["error"]["data"]["rule"], "deny: eth_getBalance",
        "{denied}"
    );

    // A standalone gateway (`chainfleet gateway --state-dir`) follows the same
    // fleet through the state database alone.
    let (upstreams, access) =
        chainfleet_gateway::watch_state_dir(controller.state_dir(), Duration::from_millis(200))
            .expect("state dir feeds");
    let (_standalone, standalone_url) =
        serve(controller.state_dir(), (upstreams, access), stop_rx.clone()).await;
    let ask = |method: &str| {
        http.post(&standalone_url)
            .bearer_auth(&key)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": []}))
            .send()
    };
    let answer: Value = ask("eth_chainId")
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["result"], "0x7a69", "{answer}");
    let denied: Value = ask("eth_getBalance")
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(
        denied["error"]["data"]["rule"], "deny: eth_getBalance",
        "{denied}"
    );

    let _ = stop_tx.send(true);
    let _ = loops.await;
    controller.stop_all().await.expect("stop nodes");
}

/// Start a gateway on `feeds` and serve it on a free port; returns it and its `/rpc/eth` URL.
async fn serve(
    state_dir: &std::path::Path,
    feeds: chainfleet_gateway::Feeds,
    stop: watch::Receiver<bool>,
) -> (Gateway, String) {
    let gateway =
        Gateway::start(GatewayOptions::new(state_dir), feeds.0, feeds.1).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/rpc/eth", listener.local_addr().expect("addr"));
    {
        let gateway = gateway.clone();
        tokio::spawn(async move { gateway.serve(listener, stop).await });
    }
    (gateway, url)
}
