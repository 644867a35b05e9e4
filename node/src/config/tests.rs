//! The flags parse, and every bad value or combination is refused with a message
//! naming the flag.

use taskmesh_cluster::detector::DetectorConfig;

use super::*;

#[test]
fn cli_is_well_formed() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn no_subcommand_means_node_with_defaults() {
    let cli = Cli::try_parse_from(["taskmesh"]).expect("parse");
    assert!(cli.command.is_none());
    let args = NodeArgs::try_parse_from(["node"]).expect("parse");
    assert_eq!(args.listen, "0.0.0.0:8080".parse().expect("addr"));
    assert_eq!(args.queue_capacity, 100_000);
}

#[test]
fn worker_bounds_are_checked() {
    let args =
        NodeArgs::try_parse_from(["node", "--workers", "4", "--max-workers", "2"]).expect("p");
    let err = NodeConfig::try_from(args).expect_err("must fail");
    assert!(err.to_string().contains("--max-workers"), "{err}");
    let args = NodeArgs::try_parse_from(["node", "--workers", "0"]).expect("parse");
    assert!(NodeConfig::try_from(args).is_err());
}

#[test]
fn store_is_embedded_or_a_redis_url() {
    let cfg = |s: &str| NodeArgs::try_parse_from(["node", "--store", s]).expect("p");
    let embedded = NodeConfig::try_from(cfg("embedded")).expect("valid");
    assert_eq!(embedded.store, StoreKind::Embedded);
    let redis = NodeConfig::try_from(cfg("redis://127.0.0.1:6379/0")).expect("valid");
    assert_eq!(redis.store.to_string(), "redis://127.0.0.1:6379/0");
    let secret: StoreKind = "redis://user:pw@db:6379/0".parse().expect("valid");
    assert_eq!(secret.to_string(), "redis://user:***@db:6379/0");
    let err = NodeConfig::try_from(cfg("postgres://x")).expect_err("invalid");
    assert!(err.to_string().contains("--store"), "{err}");
}

#[test]
fn clustering_needs_a_cookie_and_a_shared_store() {
    let cfg = |args: &[&str]| {
        let mut all = vec!["node"];
        all.extend_from_slice(args);
        NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
    };
    let alone = cfg(&[]).expect("valid");
    assert!(alone.cluster.is_none());
    let err = cfg(&["--store", "redis://r:6379/0", "--peers", "a:4697"]).expect_err("no cookie");
    assert!(err.to_string().contains("--cluster-cookie"), "{err}");
    let err = cfg(&["--cluster-cookie", "s", "--peers", "a:4697"]).expect_err("embedded");
    assert!(err.to_string().contains("shared task store"), "{err}");
    let ok = cfg(&[
        "--store",
        "redis://r:6379/0",
        "--cluster-cookie",
        "s",
        "--peers",
        "a:4697,b:4697",
        "--discover",
        "dns:node:4697",
        "--advertise",
        "10.0.0.5:4697",
        "--listen",
        "0.0.0.0:8081",
    ])
    .expect("valid");
    let c = ok.cluster.expect("clustered");
    assert_eq!(c.discovery.peers, ["a:4697", "b:4697"]);
    assert_eq!(c.discovery.dns, ["node:4697"]);
    assert_eq!(c.http_advertise, "10.0.0.5:8081");
    assert!(NodeArgs::try_parse_from(["node", "--discover", "node:4697"]).is_err());
    let err = cfg(&[
        "--store",
        "redis://r:6379/0",
        "--cluster-cookie",
        "s",
        "--max-body-bytes",
        "67108864",
        "--max-params-bytes",
        "33554432",
    ])
    .expect_err("params too large for the cluster");
    assert!(err.to_string().contains("--max-params-bytes"), "{err}");
    assert!(NodeArgs::try_parse_from(["node", "--peers", "nohost"]).is_err());
}

#[test]
fn heartbeat_flags_have_safe_defaults_and_bad_values_are_refused() {
    let cfg = |args: &[&str]| {
        let mut all = vec![
            "node",
            "--store",
            "redis://r:6379/0",
            "--cluster-cookie",
            "s",
        ];
        all.extend_from_slice(args);
        NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
    };
    let c = cfg(&[]).expect("valid").cluster.expect("clustered");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
    assert_eq!(c.detector, DetectorConfig::default());
    // A paused node must be down within 3 s: down-after plus one verdict period.
    assert!(c.detector.down_after + c.heartbeat_interval < Duration::from_secs(3));
    let c = cfg(&[
        "--heartbeat-interval-ms",
        "50",
        "--suspect-after-ms",
        "300",
        "--down-after-ms",
        "800",
    ])
    .expect("valid")
    .cluster
    .expect("clustered");
    assert_eq!(c.heartbeat_interval, Duration::from_millis(50));
    assert_eq!(c.detector.suspect_after, Duration::from_millis(300));
    assert_eq!(c.detector.down_after, Duration::from_millis(800));
    for (bad, flag) in [
        (
            &["--heartbeat-interval-ms", "0"][..],
            "--heartbeat-interval-ms",
        ),
        (
            &["--heartbeat-interval-ms", "60000"][..],
            "--heartbeat-interval-ms",
        ),
        (
            &["--heartbeat-interval-ms", "600"][..],
            "--suspect-after-ms",
        ),
        (&["--suspect-after-ms", "300"][..], "--suspect-after-ms"),
        (&["--down-after-ms", "1000"][..], "--down-after-ms"),
        (&["--down-after-ms", "500"][..], "--down-after-ms"),
    ] {
        let err = cfg(bad).expect_err("invalid");
        assert!(err.to_string().contains(flag), "{bad:?}: {err}");
    }
    // Checked on a node alone too, so a typo does not wait for the cluster.
    let alone = NodeArgs::try_parse_from(["node", "--down-after-ms", "10"]).expect("parse");
    assert!(NodeConfig::try_from(alone).is_err());
    assert!(NodeArgs::try_parse_from(["node", "--suspect-after-ms", "-1"]).is_err());
}

#[test]
fn claim_after_defaults_to_two_renewals_and_must_fit_in_the_lease() {
    let cfg = |args: &[&str]| {
        let args = NodeArgs::try_parse_from([&["node"], args].concat()).expect("parse");
        NodeConfig::try_from(args)
    };
    let c = cfg(&[]).expect("defaults");
    assert_eq!(c.claim_after, Duration::from_millis(1000));
    let c = cfg(&["--lease-renew-ms", "1000", "--lease-ttl-ms", "5000"]).expect("valid");
    assert_eq!(
        c.claim_after,
        Duration::from_millis(2000),
        "follows the renewal"
    );
    let c = cfg(&["--claim-after-ms", "3000"]).expect("valid");
    assert_eq!(c.claim_after, Duration::from_millis(3000));
    for bad in ["999", "5001"] {
        let err = cfg(&["--claim-after-ms", bad]).expect_err(bad).to_string();
        assert!(err.contains("--claim-after-ms"), "{err}");
    }
}

#[test]
fn forget_peer_after_must_outlast_the_down_verdict() {
    let cfg = |secs: &str| {
        let all = [
            "node",
            "--store",
            "redis://r:6379/0",
            "--cluster-cookie",
            "s",
            "--forget-peer-after-secs",
            secs,
        ];
        NodeConfig::try_from(NodeArgs::try_parse_from(all).expect("parse"))
    };
    let c = cfg("300").expect("valid").cluster.expect("clustered");
    assert_eq!(c.forget_peer_after, Duration::from_secs(300));
    for bad in ["0", "2", "999999999"] {
        let err = cfg(bad).expect_err(bad).to_string();
        assert!(err.contains("--forget-peer-after-secs"), "{err}");
    }
    cfg("3").expect("3 s is past the 2 s down verdict");
}

#[test]
fn lease_renewal_must_fit_in_the_lease() {
    let cfg = |args: &[&str]| {
        let args = NodeArgs::try_parse_from([&["node"], args].concat()).expect("parse");
        NodeConfig::try_from(args)
    };
    let ok = cfg(&["--lease-ttl-ms", "3000", "--lease-renew-ms", "1000"]).expect("valid");
    assert_eq!(ok.lease_renew, Duration::from_secs(1));
    assert!(cfg(&["--lease-ttl-ms", "3000", "--lease-renew-ms", "2000"]).is_err());
    assert!(cfg(&["--lease-renew-ms", "50"]).is_err());
    assert!(cfg(&["--lease-ttl-ms", "900"]).is_err());
}

#[test]
fn labels_are_split_and_trimmed() {
    let args = NodeArgs::try_parse_from(["node", "--labels", "heavy, gpu,,"]).expect("p");
    let cfg = NodeConfig::try_from(args).expect("valid");
    assert_eq!(cfg.labels, ["heavy", "gpu"]);
}

#[test]
fn auth_is_on_by_default_and_the_admin_key_is_checked_without_being_echoed() {
    let parse = |extra: &[&str]| {
        let args = NodeArgs::try_parse_from([&["node"], extra].concat()).expect("parse");
        NodeConfig::try_from(args)
    };
    let default = parse(&[]).expect("valid");
    assert!(default.auth.enabled, "secure by default");
    assert!(!default.auth.protect_metrics, "/metrics open by default");
    assert_eq!(default.auth.admin_key, None);
    assert!(!parse(&["--auth", "off"]).expect("valid").auth.enabled);
    let metrics = parse(&["--metrics-auth", "on"]).expect("valid");
    assert!(metrics.auth.enabled && metrics.auth.protect_metrics);

    let key = ApiKey::generate();
    let text = key.expose();
    let given = parse(&["--auth", "on", "--admin-key", &text]).expect("valid");
    assert_eq!(given.auth.admin_key, Some(AdminKeySource::Env(key)));
    assert!(
        !format!("{given:?}").contains(&text[16..]),
        "Debug hides the secret"
    );

    let almost = format!("{}x", &text[..text.len() - 1]).replace('_', "-");
    let err = parse(&["--admin-key", &almost]).expect_err("malformed");
    assert!(err.to_string().contains("TASKMESH_ADMIN_KEY"), "{err}");
    assert!(!format!("{err:#}").contains(&almost[16..]), "{err:#}");

    let both = parse(&["--admin-key", &text, "--admin-key-file", "/k"]).expect_err("both");
    assert!(both.to_string().contains("not both"), "{both}");
}
