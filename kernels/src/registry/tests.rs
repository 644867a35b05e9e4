use std::thread;
use std::time::{Duration, Instant};

use super::*;

fn standard() -> Registry {
    Registry::new(RegistryOptions::default())
}

fn with_test_kernels() -> Registry {
    Registry::new(RegistryOptions { test_kernels: true })
}

#[test]
fn standard_kinds_are_sorted_and_exclude_test_kinds() {
    assert_eq!(
        standard().kinds(),
        [
            "echo",
            "matmul",
            "monte_carlo_option",
            "noop",
            "portfolio_var",
            "sleep"
        ]
    );
    assert!(!standard().contains("panic"));
}

#[test]
fn test_kernels_are_opt_in() {
    let registry = with_test_kernels();
    for kind in ["panic", "abort", "fail", "flaky", "spin"] {
        assert!(registry.contains(kind), "{kind}");
    }
    let kinds = registry.kinds();
    assert!(kinds.windows(2).all(|w| w[0] < w[1]), "{kinds:?}");
    assert_eq!(kinds.len(), 11);
}

#[test]
fn unknown_kind_lists_the_known_ones() {
    let registry = standard();
    let expected = KernelError::UnknownKind {
        kind: "nope".into(),
        known: registry.kinds(),
    };
    assert_eq!(registry.validate("nope", "{}"), Err(expected.clone()));
    assert_eq!(
        registry.run("nope", "{}", &Context::default()),
        Err(expected)
    );
    assert!(!registry.contains("nope"));
    assert!(
        standard()
            .run("panic", "{}", &Context::default())
            .is_err_and(|e| matches!(e, KernelError::UnknownKind { .. }))
    );
}

#[test]
fn only_noop_and_echo_are_trivial() {
    let registry = with_test_kernels();
    let trivial: Vec<_> = registry
        .kinds()
        .into_iter()
        .filter(|kind| registry.is_trivial(kind))
        .collect();
    assert_eq!(trivial, ["echo", "noop"]);
    assert!(!registry.is_trivial("nope"));
}

#[test]
fn run_returns_json_text() {
    let registry = standard();
    let ctx = Context::default();
    assert_eq!(registry.run("noop", "null", &ctx), Ok("null".into()));
    assert_eq!(
        registry.run("echo", r#"{"value": [1, "a"]}"#, &ctx),
        Ok(r#"{"value":[1,"a"]}"#.into())
    );
    let out = registry
        .run("matmul", r#"{"n": 4, "seed": 1}"#, &ctx)
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["n"], 4);
    assert!(value["trace"].is_f64() && value["checksum"].is_f64());
}

#[test]
fn run_validates_like_validate() {
    let registry = standard();
    let params = r#"{"s0": 100, "k": 100, "r": 0, "sigma": 0.2, "t": 1, "paths": 50000001}"#;
    let expected = Err(KernelError::invalid("paths", "must be at most 50000000"));
    assert_eq!(registry.validate("monte_carlo_option", params), expected);
    assert_eq!(
        registry
            .run("monte_carlo_option", params, &Context::default())
            .map(drop),
        expected
    );
}

#[test]
fn non_object_params_are_rejected_at_the_root() {
    let registry = with_test_kernels();
    for kind in registry.kinds() {
        if kind == "noop" {
            continue;
        }
        for params in ["null", "[]", "1", "\"x\"", "true"] {
            match registry.validate(kind, params) {
                Err(KernelError::InvalidParams { field, .. }) => {
                    assert_eq!(field, ".", "{kind} {params}")
                }
                other => panic!("{kind} {params}: {other:?}"),
            }
        }
    }
}

#[test]
fn clones_share_the_table_and_run_on_other_threads() {
    let registry = standard();
    let clone = registry.clone();
    let out = thread::spawn(move || clone.run("echo", r#"{"value": 1}"#, &Context::default()))
        .join()
        .unwrap();
    assert_eq!(out, Ok(r#"{"value":1}"#.into()));
    assert!(format!("{registry:?}").contains("monte_carlo_option"));
}

#[test]
fn cancel_reaches_a_running_kernel() {
    let registry = standard();
    let ctx = Context::default();
    let cancel = ctx.cancel_token().clone();
    let start = Instant::now();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        cancel.cancel();
    });
    assert_eq!(
        registry.run("sleep", r#"{"ms": 600000}"#, &ctx),
        Err(KernelError::Cancelled)
    );
    canceller.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
}

struct Twice;

impl crate::Kernel for Twice {
    const NAME: &'static str = "twice";
    type Params = TwiceParams;
    type Output = u64;

    fn execute(&self, params: TwiceParams, _ctx: &Context) -> Result<u64, KernelError> {
        Ok(params.x * 2)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TwiceParams {
    x: u64,
}

impl crate::Params for TwiceParams {
    fn check(&self) -> Result<(), KernelError> {
        crate::check::at_most("x", self.x, 1000)
    }
}

/// A kind like `echo` under another kernel: registering it clashes with the built-in.
struct FakeEcho;

impl crate::Kernel for FakeEcho {
    const NAME: &'static str = "echo";
    type Params = TwiceParams;
    type Output = ();

    fn execute(&self, _params: TwiceParams, _ctx: &Context) -> Result<(), KernelError> {
        Ok(())
    }
}

#[test]
fn added_kinds_run_next_to_the_built_in_ones() {
    let registry = Registry::builder()
        .kind(Twice)
        .build(RegistryOptions::default())
        .unwrap();
    assert!(registry.contains("twice") && registry.contains("matmul"));
    assert_eq!(
        registry.run("twice", r#"{"x": 21}"#, &Context::default()),
        Ok("42".into())
    );
    assert_eq!(
        registry.validate("twice", r#"{"x": 1001}"#),
        Err(KernelError::invalid("x", "must be at most 1000"))
    );
    assert!(!registry.is_trivial("twice"));
}

#[test]
fn a_kind_registered_twice_is_named() {
    let twice = Registry::builder()
        .kind(Twice)
        .kind(Twice)
        .build(RegistryOptions::default());
    assert_eq!(
        twice.map(|r| r.kinds()),
        Err(KernelError::DuplicateKind {
            kind: "twice".into()
        })
    );
    let clash = Registry::builder()
        .kind(FakeEcho)
        .build(RegistryOptions::default());
    let err = clash.map(|r| r.kinds()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "kind `echo` is registered twice (kind names are unique, built-in ones included)"
    );
}

#[test]
fn built_in_and_test_kinds_do_not_clash() {
    assert!(
        Registry::builder()
            .build(RegistryOptions { test_kernels: true })
            .is_ok()
    );
}

#[test]
fn external_kinds_are_known_and_checked_only_as_json_objects() {
    let registry = Registry::builder()
        .external("py_square")
        .build(RegistryOptions::default())
        .expect("distinct kinds");
    assert!(registry.contains("py_square") && registry.is_external("py_square"));
    assert!(!registry.kinds().contains(&"py_square"));
    assert_eq!(registry.external_kinds().collect::<Vec<_>>(), ["py_square"]);
    assert_eq!(registry.validate("py_square", r#"{"x": 1}"#), Ok(()));
    assert!(registry.validate("py_square", "[1]").is_err());
    assert!(registry.validate("py_square", "{").is_err());
    assert!(!registry.is_trivial("py_square"));
}

#[test]
fn an_external_kind_may_not_clash_with_another_kind() {
    let clash = Registry::builder()
        .external("noop")
        .build(RegistryOptions::default());
    assert_eq!(
        clash.err(),
        Some(KernelError::DuplicateKind {
            kind: "noop".into()
        })
    );
    let twice = Registry::builder()
        .external("a")
        .external("a")
        .build(RegistryOptions::default());
    assert_eq!(
        twice.err(),
        Some(KernelError::DuplicateKind { kind: "a".into() })
    );
}
