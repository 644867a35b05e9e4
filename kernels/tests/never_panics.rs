//! Property tests over the public API: no params text makes `validate` panic,
//! `run` rejects exactly what `validate` rejects, and the compute kernels
//! never panic on params that pass validation.

use proptest::prelude::*;
use serde_json::{Map, Value};
use taskmesh_kernels::{Context, KernelError, Registry, RegistryOptions};

/// The kinds and the fields their params take.
const KINDS: &[(&str, &[&str])] = &[
    ("noop", &[]),
    ("echo", &["value"]),
    ("sleep", &["ms"]),
    (
        "monte_carlo_option",
        &["s0", "k", "r", "sigma", "t", "paths", "seed", "option"],
    ),
    ("matmul", &["n", "seed"]),
    (
        "portfolio_var",
        &["assets", "scenarios", "confidence", "seed"],
    ),
    ("panic", &[]),
    ("fail", &["message"]),
    ("flaky", &["fail_attempts"]),
    ("spin", &["ms"]),
];

fn registry() -> Registry {
    Registry::new(RegistryOptions { test_kernels: true })
}

/// Validates `params` for every kind: each must be accepted or rejected as
/// invalid params, and `run` must reject what `validate` rejects, the same way.
fn validate_everywhere(registry: &Registry, params: &str) -> Result<(), TestCaseError> {
    for (kind, _) in KINDS {
        match registry.validate(kind, params) {
            Ok(()) => {}
            Err(err @ KernelError::InvalidParams { .. }) => {
                let ran = registry.run(kind, params, &Context::default());
                prop_assert_eq!(ran, Err(err), "{} {}", kind, params);
            }
            Err(other) => prop_assert!(false, "{kind} {params}: unexpected {other:?}"),
        }
    }
    Ok(())
}

/// Any JSON value, nested a few levels, with keys that are often real field names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((field_name(), inner), 0..8)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    let known: Vec<&str> = KINDS
        .iter()
        .flat_map(|(_, fields)| fields.iter().copied())
        .collect();
    prop_oneof![
        prop::sample::select(known).prop_map(String::from),
        "[a-z_]{1,8}",
    ]
}

/// Any `f64`, but mostly positive ones, from tiny to huge, so runs get past validation.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => any::<f64>(),
        2 => 1e-300f64..1e300,
        4 => 1e-3f64..10.0,
    ]
}

/// Number-like JSON text, including values no Rust number type holds.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|x| x.to_string()),
        any::<i64>().prop_map(|x| x.to_string()),
        any::<u64>().prop_map(|x| x.to_string()),
        any::<i128>().prop_map(|x| x.to_string()),
        (0u64..2_000_000).prop_map(|x| x.to_string()),
        (0.0f64..1.5).prop_map(|x| x.to_string()),
        "-?[0-9]{1,24}(\\.[0-9]{1,6})?([eE][-+]?[0-9]{1,4})?",
        Just("\"call\"".to_owned()),
        Just("\"put\"".to_owned()),
        Just("null".to_owned()),
    ]
}

/// An object with some of `fields`, each set to number-like text.
fn params_with_numbers(fields: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec((any::<bool>(), number_text()), fields.len()).prop_map(move |values| {
        let entries: Vec<String> = fields
            .iter()
            .zip(values)
            .filter(|(_, (present, _))| *present)
            .map(|(field, (_, value))| format!("\"{field}\": {value}"))
            .collect();
        format!("{{{}}}", entries.join(", "))
    })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(params in ".{0,64}") {
        validate_everywhere(&registry(), &params)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        validate_everywhere(&registry(), &value.to_string())?;
    }

    #[test]
    fn arbitrary_numbers_never_panic(
        (kind, params) in prop::sample::select(KINDS)
            .prop_flat_map(|(kind, fields)| (Just(kind), params_with_numbers(fields)))
    ) {
        let registry = registry();
        match registry.validate(kind, &params) {
            Ok(()) | Err(KernelError::InvalidParams { .. }) => {}
            Err(other) => prop_assert!(false, "{kind} {params}: unexpected {other:?}"),
        }
    }

    #[test]
    fn monte_carlo_never_panics_on_valid_params(
        s0 in float(), k in float(), r in float(), sigma in float(), t in float(),
        paths in 1u32..64, seed in any::<u64>(), put in any::<bool>(),
    ) {
        let option = if put { "put" } else { "call" };
        let params = format!(
            r#"{{"s0": {s0:e}, "k": {k:e}, "r": {r:e}, "sigma": {sigma:e}, "t": {t:e},
                "paths": {paths}, "seed": {seed}, "option": "{option}"}}"#
        );
        match registry().run("monte_carlo_option", &params, &Context::default()) {
            Ok(out) => {
                let out: Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(out["price"].as_f64().is_some_and(f64::is_finite), "{out}");
                prop_assert!(out["std_error"].as_f64().is_some_and(f64::is_finite), "{out}");
            }
            Err(KernelError::InvalidParams { .. } | KernelError::Permanent(_)) => {}
            Err(other) => prop_assert!(false, "{params}: unexpected {other:?}"),
        }
    }

    #[test]
    fn small_var_and_matmul_runs_never_panic(
        assets in 1u32..8, scenarios in 1u32..200, confidence in 0.5f64..1.0,
        n in 1u32..12, seed in any::<u64>(),
    ) {
        let registry = registry();
        let ctx = Context::default();
        let params = format!(
            r#"{{"assets": {assets}, "scenarios": {scenarios}, "confidence": {confidence:e}, "seed": {seed}}}"#
        );
        match registry.run("portfolio_var", &params, &ctx) {
            Ok(out) => {
                let out: Value = serde_json::from_str(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let var = out["var"].as_f64().unwrap_or(f64::NAN);
                let cvar = out["cvar"].as_f64().unwrap_or(f64::NAN);
                prop_assert!(cvar >= var, "{out}");
            }
            // 0.5 itself is excluded.
            Err(KernelError::InvalidParams { field, .. }) => prop_assert_eq!(field, "confidence"),
            Err(other) => prop_assert!(false, "{params}: unexpected {other:?}"),
        }
        let matmul = registry.run("matmul", &format!(r#"{{"n": {n}, "seed": {seed}}}"#), &ctx);
        prop_assert!(matmul.is_ok(), "{matmul:?}");
    }
}
