use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use chainfleet_runtime::LaunchSpec;
use chainfleet_runtime::{Liveness, NodeRuntime, NodeSpec, ProcessRuntime, RuntimeError};

/// A long-running shell "node" whose command line carries its data dir.
fn shell_node(dir: &Path, name: &str, script: &str) -> NodeSpec {
    let data_dir = dir.join(name);
    NodeSpec {
        name: name.into(),
        launch: LaunchSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into(), data_dir.display().to_string()],
            config_file: Some((data_dir.join("node.conf"), "a=1\n".into())),
        },
        log_path: dir.join(format!("{name}.log")),
        data_dir,
        ports: Vec::new(),
        run_as: None,
    }
}

/// Wait until the node's log contains `text`.
fn wait_for_log(spec: &NodeSpec, text: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(
            &spec.log_path
        )
        .is_ok_and(|log| log.contains(text))),
        "{} never logged {text:?}",
        spec.name
    );
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn start_observe_terminate_and_reap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = ProcessRuntime::new();
    let spec = shell_node(
        dir.path(),
        "n0",
        "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 0.05; done",
    );
    let handle = runtime.start(&spec).expect("start");
    assert_eq!(runtime.observe(&handle), Liveness::Running);
    assert_eq!(
        std::fs::read_to_string(spec.data_dir.join("node.conf")).expect("config written"),
        "a=1\n"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&spec.log_path).is_ok_and(|log| log.contains("started"))
    }));
    runtime.terminate("n0", &handle).expect("sigterm");
    assert!(wait_until(Duration::from_secs(5), || runtime
        .observe(&handle)
        != Liveness::Running));
    assert!(std::fs::read_to_string(&spec.log_path)
        .expect("log")
        .contains("bye"));
}

#[test]
fn kill_reports_the_signal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = ProcessRuntime::new();
    let spec = shell_node(
        dir.path(),
        "n1",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let handle = runtime.start(&spec).expect("start");
    wait_for_log(&spec, "ready");
    runtime.terminate("n1", &handle).expect("sigterm ignored");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(runtime.observe(&handle), Liveness::Running);
    runtime.kill("n1", &handle).expect("sigkill");
    assert!(wait_until(Duration::from_secs(5), || matches!(
        runtime.observe(&handle),
        Liveness::Exited {
            signal: Some(9),
            ..
        }
    )));
}

#[test]
fn a_second_supervisor_adopts_by_record_and_by_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = ProcessRuntime::new();
    let spec = shell_node(dir.path(), "n2", "echo ready; while :; do sleep 0.05; done");
    let handle = first.start(&spec).expect("start");
    wait_for_log(&spec, "ready");

    let second = ProcessRuntime::new();
    assert_eq!(
        second.adopt(&spec, Some(handle)),
        Some(handle),
        "adopt by record"
    );
    assert_eq!(second.adopt(&spec, None), Some(handle), "adopt by data dir");
    let stale = chainfleet_runtime::ProcessHandle {
        pid: handle.pid,
        start_ticks: handle.start_ticks + 1,
    };
    assert_eq!(
        second.adopt(&spec, Some(stale)),
        Some(handle),
        "stale record falls back to scan"
    );
    let other = shell_node(dir.path(), "n2x", "true");
    assert_eq!(
        second.adopt(&other, None),
        None,
        "another node's process is not adopted"
    );

    second.kill("n2", &handle).expect("kill");
    assert!(wait_until(Duration::from_secs(5), || first
        .observe(&handle)
        != Liveness::Running));
    assert_eq!(second.adopt(&spec, Some(handle)), None);
}

#[test]
fn clear_errors_for_missing_binary_busy_port_and_unwritable_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = ProcessRuntime::new();

    let mut missing = shell_node(dir.path(), "n3", "true");
    missing.launch.program = "no-such-chain-client-xyz".into();
    let err = runtime.start(&missing).expect_err("missing binary");
    assert!(matches!(err, RuntimeError::BinaryNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-chain-client-xyz"));

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut busy = shell_node(dir.path(), "n4", "true");
    busy.ports = vec![("rpc".into(), port)];
    let err = runtime.start(&busy).expect_err("busy port").to_string();
    assert!(
        err.contains(&format!(
            "rpc port {port} is already in use by pid {}",
            std::process::id()
        )),
        "{err}"
    );

    let blocker = dir.path().join("file-not-dir");
    std::fs::write(&blocker, "x").expect("write");
    let mut unwritable = shell_node(dir.path(), "n5", "true");
    unwritable.data_dir = blocker.join("data");
    let err = runtime.start(&unwritable).expect_err("bad data dir");
    assert!(matches!(err, RuntimeError::DataDir { .. }), "{err}");
    assert!(err.to_string().contains("file-not-dir/data"), "{err}");
}

#[test]
fn runs_as_the_named_user_when_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: dropping privileges cannot be tested as this user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let runtime = ProcessRuntime::new();
    let mut spec = shell_node(dir.path(), "n6", "id -u; while :; do sleep 0.05; done");
    spec.run_as = Some("nobody".into());
    let handle = runtime.start(&spec).expect("start as nobody");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("nobody exists");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&spec.log_path)
            .is_ok_and(|log| log.trim() == nobody.uid.to_string())
    }));
    runtime.kill("n6", &handle).expect("kill");

    spec.run_as = Some("no-such-user-xyz".into());
    let err = runtime.start(&spec).expect_err("unknown user");
    assert!(matches!(err, RuntimeError::NoSuchUser { .. }), "{err}");
}
