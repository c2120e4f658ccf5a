use super::*;

const HEADER: &str = "apiVersion: chainfleet.dev/v1alpha1\nkind: Fleet\n";

fn problems_of(body: &str) -> Vec<String> {
    match parse(&format!("{HEADER}{body}"), "test.yaml") {
        Ok(_) => Vec::new(),
        Err(SpecError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

#[test]
fn ten_line_manifest_gets_working_defaults() {
    let text = format!(
        "{HEADER}instances:\n  - name: ltc\n    chain: litecoin\n    role: producer\n    production: {{}}\n"
    );
    let manifest = parse(&text, "min.yaml").expect("valid");
    let instance = &manifest.fleet.instances[0];
    assert_eq!(instance.replicas, 1);
    assert_eq!(instance.network, Network::Regtest);
    assert_eq!(instance.ports, Ports::default());
    assert_eq!(
        instance.production.as_ref().map(|p| p.block_interval.get()),
        Some(std::time::Duration::from_secs(5))
    );
    assert_eq!(
        manifest.fleet.settings.probe_interval.get(),
        std::time::Duration::from_secs(2)
    );
}

/// Each case: manifest body after the header, and a fragment every expected
/// problem line must contain (all must appear).
#[test]
fn validation_errors_name_field_and_position() {
    let cases: &[(&str, &[&str])] = &[
        (
            "instances:\n  - name: a\n    chain: litecoin\n    replicas: 0\n",
            &["instances[0].replicas: must be at least 1 (line 6, column 15)"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    replica: 2\n",
            &["instances[0].replica: unknown field `replica`; did you mean `replicas`?", "(line 6, column 5)"],
        ),
        (
            "instances:\n  - name: a\n    chain: litcoin\n",
            &["instances[0].chain: unknown value `litcoin`; did you mean `litecoin`?"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n  - name: a\n    chain: litecoin\n",
            &["instances[1].name: duplicate instance name `a` (also at instances[0]) (line 6, column 11)"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    ports: {rpc: 20000}\n    replicas: 2\n  - name: b\n    chain: litecoin\n    ports: {p2p: 20001}\n",
            &["instances[1].ports.p2p: ports 20001-20001 clash with instances[0].ports.rpc"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    peers: [bb]\n  - name: b\n    chain: litecoin\n",
            &["instances[0].peers[0]: no instance is named `bb`; did you mean `b`?"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    peers: [b]\n  - name: b\n    chain: monero\n",
            &["`b` runs monero, not litecoin"],
        ),
        (
            "instances:\n  - name: Bad_Name\n    chain: litecoin\n",
            &["instances[0].name: `Bad_Name` must use only lower-case"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    network: mainnet\n    role: producer\n    production: {}\n",
            &["instances[0].production: block production is only for regtest and devnet"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    production: {blockInterval: 5s}\n",
            &["block production needs `role: producer`"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    role: producer\n    production: {blockInterval: soon}\n",
            &["instances[0].production.blockInterval: `soon` is not a duration"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    client:\n      config: {\"rpcbind\\nx\": \"1\"}\n",
            &["config keys may use only letters"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    replicas: two\n",
            &["instances[0].replicas: invalid type: string \"two\", expected u32"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    ports: {rpc: 70000}\n",
            &["instances[0].ports.rpc: invalid value"],
        ),
        ("instances: []\n", &["instances: a fleet needs at least one instance"]),
        ("instances: {}\n", &["instances: must be a list of instances"]),
        ("instance: []\n", &["unknown field `instance`; did you mean `instances`?"]),
        (
            "settings: {probeInterval: 1ms}\ninstances:\n  - name: a\n    chain: litecoin\n",
            &["settings.probeInterval: must be between 100ms and 1h"],
        ),
        (
            "instances:\n  - name: a\n    chain: litecoin\n    stopTimeout: 0s\n",
            &["instances[0].stopTimeout: must be between 1s and 1h"],
        ),
        ("instances:\n  - [1, 2]\n", &["instances[0][0]: invalid type: integer `1`"]),
        ("instances: [\n", &["not valid YAML"]),
        ("a: *nope\n", &["not valid YAML"]),
    ];
    for (body, expected) in cases {
        let problems = problems_of(body);
        for fragment in *expected {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "case {body:?}: no problem contains {fragment:?}; got {problems:#?}"
            );
        }
    }
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let problems = problems_of(
        "instances:\n  - name: a\n    chain: litecoin\n    replicas: 0\n  - name: b\n    chain: nope\n  - name: c\n    chain: litecoin\n    replicas: 100\n",
    );
    assert!(
        problems.iter().any(|p| p.contains("instances[1].chain")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("instances[0].replicas")),
        "{problems:#?}"
    );
}

#[test]
fn wrong_version_and_kind_are_errors() {
    let problems = match parse(
        "apiVersion: v2\nkind: Pod\ninstances:\n  - name: a\n    chain: litecoin\n",
        "t.yaml",
    ) {
        Err(SpecError::Invalid { problems, .. }) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(text
        .iter()
        .any(|p| p.starts_with("apiVersion: `v2` is not supported")));
    assert!(text
        .iter()
        .any(|p| p.starts_with("kind: `Pod` is not supported")));
}

#[test]
fn hostile_documents_are_rejected_cleanly() {
    let huge = "a".repeat(MAX_MANIFEST_BYTES + 1);
    assert!(matches!(
        parse(&huge, "big.yaml"),
        Err(SpecError::TooLarge { .. })
    ));
    let deep = format!("{HEADER}x: {}{}\n", "[".repeat(500), "]".repeat(500));
    assert!(parse(&deep, "deep.yaml").is_err());
    for text in ["", "---\n", "42\n", "- a\n- b\n", "\u{feff}kind: Fleet\n"] {
        assert!(parse(text, "odd.yaml").is_err(), "accepted {text:?}");
    }
}

#[test]
fn released_manifest_versions_still_parse() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut count = 0;
    for entry in std::fs::read_dir(fixtures).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        load_file(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        count += 1;
    }
    assert!(count >= 1, "no fixtures found");
}

#[test]
fn schema_lists_instance_fields() {
    let schema = json_schema();
    let text = schema.to_string();
    for field in [
        "replicas",
        "blockInterval",
        "rewardAddress",
        "probeInterval",
    ] {
        assert!(text.contains(field), "schema lacks {field}");
    }
}
