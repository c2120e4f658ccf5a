//! Commands that need no running fleet.

use std::process::Command;

fn chainfleet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chainfleet"))
        .args(args)
        .output()
        .expect("run chainfleet")
}

#[test]
fn validate_reports_every_problem_with_positions() {
    let dir = chainfleet_testkit::temp_dir();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: chainfleet.dev/v1alpha1
kind: Fleet
instances:
  - name: a
    chain: litecoin
    replicas: 0
  - name: a
    chain: litecoin
    replicaz: 2
",
    )
    .expect("write");
    let out = chainfleet(&["validate", "-f", file.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("instances[0].replicas: must be at least 1 (line 6, column 15)"),
        "{err}"
    );
    assert!(
        err.contains("instances[1].replicaz: unknown field `replicaz`; did you mean `replicas`?"),
        "{err}"
    );

    let json = chainfleet(&["validate", "-f", file.to_str().expect("utf8"), "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json output");
    assert_eq!(value["valid"], false);
    assert!(value["problems"].as_array().is_some_and(|p| !p.is_empty()));
}

#[test]
fn validate_accepts_the_example_and_rejects_missing_files() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/devnet.yaml");
    let out = chainfleet(&["validate", "-f", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (4 instances, 5 nodes)"));

    let out = chainfleet(&["validate", "-f", "/nonexistent/fleet.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read manifest /nonexistent/fleet.yaml"));
}

#[test]
fn schema_is_json_and_status_without_a_control_plane_says_what_to_do() {
    let out = chainfleet(&["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    assert!(schema.to_string().contains("blockInterval"));

    let port = chainfleet_testkit::free_port();
    let out = chainfleet(&["status", "--api", &format!("http://127.0.0.1:{port}")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Chainfleet control plane answers"), "{err}");
    assert!(err.contains("chainfleet up -f FILE"), "{err}");
}
