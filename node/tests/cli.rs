//! The `taskmesh` command line, run as a process. Besides checking the CLI, this test
//! makes `cargo test`/`cargo nextest run --workspace` build the `taskmesh` binary that the
//! black-box tests of the `integration-tests` package start.

use std::process::{Command, Output};

fn taskmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_taskmesh"))
        .args(args)
        .env_remove("TASKMESH_LISTEN")
        .output()
        .expect("run taskmesh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_the_node_subcommand() {
    let out = taskmesh(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("node"), "{stdout}");
}

#[test]
fn node_help_lists_flags_and_their_environment_variables() {
    let out = taskmesh(&["node", "--help"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    for needle in [
        "--listen",
        "TASKMESH_LISTEN",
        "--data-dir",
        "--workers",
        "--queue-capacity",
        "--shutdown-grace-secs",
        "--test-kernels",
    ] {
        assert!(
            stdout.contains(needle),
            "`{needle}` missing from:\n{stdout}"
        );
    }
}

#[test]
fn inconsistent_worker_bounds_are_refused_before_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let out = taskmesh(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--workers",
        "4",
        "--max-workers",
        "2",
    ]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--max-workers"), "{stderr}");
}

#[test]
fn unknown_flags_are_refused() {
    let out = taskmesh(&["node", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn keys_generate_prints_a_fresh_well_formed_key_offline() {
    let keys: Vec<String> = (0..2)
        .map(|_| {
            let out = taskmesh(&["keys", "generate"]);
            assert!(out.status.success(), "{out:?}");
            text(&out.stdout).trim().to_owned()
        })
        .collect();
    for key in &keys {
        let parts: Vec<&str> = key.split('_').collect();
        assert_eq!(parts.len(), 3, "{key}");
        assert_eq!(parts[0], "tm");
        assert_eq!(parts[1].len(), 12, "{key}");
        assert_eq!(parts[2].len(), 32, "{key}");
        let lower_alnum = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        assert!(lower_alnum(parts[1]) && lower_alnum(parts[2]), "{key}");
    }
    assert_ne!(keys[0], keys[1]);
}
