//! Producer failover across two control planes sharing a real etcd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::lifecycle::{post, raw_http, ControlPlane};

/// A real etcd on free loopback ports in a temp dir; killed on drop.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = chainfleet_testkit::temp_dir();
        let (client, peer) = chainfleet_testkit::free_ports();
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("t={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (apt-get install etcd-server, or run scripts/install.sh)");
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let start = Instant::now();
        let addr = etcd.url.trim_start_matches("http://").to_string();
        while std::net::TcpStream::connect(&addr).is_err()
            || raw_http(&etcd.url, &post("/v3/kv/range", br#"{"key":"eA=="}"#)).0 != 200
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "etcd did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signal etcd");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Region {
    plane: ControlPlane,
    state: PathBuf,
    node: String,
}

/// Two regions `a` and `b`, one litecoind each, peered, in one etcd-backed group.
fn two_regions(dir: &Path, etcd: &Etcd) -> (Region, Region) {
    let ports = [
        chainfleet_testkit::free_ports(),
        chainfleet_testkit::free_ports(),
    ];
    let prefix = format!("/test-{}/", chainfleet_testkit::free_port());
    let mut regions = Vec::new();
    for (index, name) in ["a", "b"].into_iter().enumerate() {
        let (rpc, p2p) = ports[index];
        let other_p2p = ports[1 - index].1;
        let manifest = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
metadata: {{name: {name}}}
settings: {{probeInterval: 500ms}}
producerGroups:
  ltc: {{leaseTtl: 2s, maxLag: 3, backend: {{type: etcd, endpoints: ['{}'], prefix: '{prefix}'}}}}
instances:
  - name: ltc-{name}
    chain: litecoin
    role: producer
    producerGroup: ltc
    production: {{blockInterval: 300ms}}
    ports: {{rpc: {rpc}, p2p: {p2p}}}
    client: {{args: ['-addnode=127.0.0.1:{other_p2p}']}}
",
                etcd.url
            ),
        )
        .expect("write manifest");
        let state = dir.join(format!("state-{name}"));
        regions.push(Region {
            plane: ControlPlane::start(&manifest, &state),
            state,
            node: format!("ltc-{name}-0"),
        });
    }
    let b = regions.pop().expect("b");
    let a = regions.pop().expect("a");
    (a, b)
}

fn producers(plane: &ControlPlane) -> Option<serde_json::Value> {
    let out = plane.cli(&["producers", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()?
        .get(0)
        .cloned()
}

/// Wait until some region's view says `FLEET/NODE` is active with a block in epoch > `after`.
fn wait_active(regions: &[&Region], after: u64, what: &str) -> (String, u64) {
    let start = Instant::now();
    loop {
        for region in regions {
            if let Some(group) = producers(&region.plane) {
                let epoch = group["epoch"].as_u64().unwrap_or(0);
                let mark_epoch = group["watermark"]["epoch"].as_u64().unwrap_or(0);
                if let Some(active) = group["active"].as_str() {
                    if epoch > after && mark_epoch == epoch {
                        return (active.to_string(), epoch);
                    }
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn litecoin_cli(region: &Region, args: &[&str]) -> String {
    let data = region.state.join("nodes").join(&region.node);
    let out = Command::new("litecoin-cli")
        .arg(format!("-conf={}", data.join("litecoin.conf").display()))
        .arg(format!("-datadir={}", data.display()))
        .args(args)
        .output()
        .expect("litecoin-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn height(region: &Region) -> u64 {
    litecoin_cli(region, &["getblockcount"])
        .parse()
        .unwrap_or(0)
}

/// Producer epochs of every block on `region`'s node, from its coinbase scripts.
fn epochs(region: &Region) -> Vec<u64> {
    let tip = height(region);
    (1..=tip)
        .filter_map(|h| {
            let hash = litecoin_cli(region, &["getblockhash", &h.to_string()]);
            let block: serde_json::Value =
                serde_json::from_str(&litecoin_cli(region, &["getblock", &hash, "2"])).ok()?;
            let script = block["tx"][0]["vout"][0]["scriptPubKey"]["hex"]
                .as_str()?
                .to_string();
            let body = script.strip_prefix("08")?.strip_suffix("7551")?;
            let bytes: Vec<u8> = (0..8)
                .filter_map(|i| u8::from_str_radix(body.get(i * 2..i * 2 + 2)?, 16).ok())
                .collect();
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        })
        .collect()
}

fn assert_monotonic(epochs: &[u64]) {
    let violations = epochs.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(
        violations, 0,
        "epochs went back along the chain: {epochs:?}"
    );
}

#[test]
fn killing_the_lease_holders_control_plane_hands_over_through_etcd() {
    let etcd = Etcd::start();
    let dir = chainfleet_testkit::temp_dir();
    let (mut a, mut b) = two_regions(dir.path(), &etcd);
    let (holder, epoch) = wait_active(&[&a, &b], 0, "a first producer");
    let (dead, survivor) = if holder.starts_with("a/") {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    dead.plane
        .child
        .kill()
        .expect("kill -9 the holder's control plane");
    dead.plane.child.wait().expect("reap");
    let (new_holder, new_epoch) = wait_active(&[survivor], epoch, "the survivor to take over");
    assert!(new_holder.ends_with(&survivor.node), "{new_holder}");
    assert!(new_epoch > epoch);
    let start_height = height(survivor);
    let start = Instant::now();
    while height(survivor) < start_height + 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the survivor does not produce"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let chain = epochs(survivor);
    assert_monotonic(&chain);
    assert!(chain.contains(&new_epoch), "{chain:?}");
    let _ = survivor.plane.cli(&["down"]);
    // The killed control plane's node was orphaned on purpose; stop it directly.
    let _ = Command::new(env!("CARGO_BIN_EXE_chainfleet"))
        .args(["down", "--api", "http://127.0.0.1:1", "--state-dir"])
        .arg(&dead.state)
        .output();
}

#[test]
fn a_holder_cut_off_from_etcd_stops_producing_before_the_ttl() {
    let etcd = Etcd::start();
    let dir = chainfleet_testkit::temp_dir();
    let (a, b) = two_regions(dir.path(), &etcd);
    let (holder, epoch) = wait_active(&[&a, &b], 0, "a first producer");
    let producer = if holder.starts_with("a/") { &a } else { &b };
    let before = height(producer);
    let start = Instant::now();
    while height(producer) < before + 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no production before the cut"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Cut everyone off from etcd: the holder must stop within TTL/2 (1 s).
    etcd.signal(nix::sys::signal::Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1500));
    let stopped_at = height(producer);
    std::thread::sleep(Duration::from_millis(2500));
    let later = height(producer);
    etcd.signal(nix::sys::signal::Signal::SIGCONT);
    assert_eq!(
        later, stopped_at,
        "the holder kept producing without its lease"
    );
    // With etcd back, production resumes under a new epoch.
    let (_, new_epoch) = wait_active(&[&a, &b], epoch, "production to resume");
    assert!(new_epoch > epoch);
    let resumed = Instant::now();
    while height(producer).max(height(if std::ptr::eq(producer, &a) { &b } else { &a })) <= later {
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "no production after etcd came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_monotonic(&epochs(producer));
    let _ = a.plane.cli(&["down"]);
    let _ = b.plane.cli(&["down"]);
}
