use std::collections::BTreeSet;

use axum::http::Method;
use utoipa::openapi::RefOr;
use utoipa::openapi::path::Operation;

use super::*;

/// Every (method, path, operation) of the document.
fn operations(doc: &openapi::OpenApi) -> Vec<(Method, String, Operation)> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
            (Method::HEAD, &item.head),
            (Method::OPTIONS, &item.options),
            (Method::TRACE, &item.trace),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                out.push((method, path.clone(), op.clone()));
            }
        }
    }
    out
}

/// The paths an axum router serves, read from its `Debug` output (axum lists its
/// `route_id_to_path` there); the only way to list a router's routes from outside. Only
/// the `path_router` part: the fallback router holds axum's own catch-all paths.
fn router_paths(router: &Router<IngressState>) -> BTreeSet<String> {
    let text = format!("{router:?}");
    let text = text.split("fallback_router:").next().unwrap_or_default();
    let mut paths = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at..];
        let Some(open) = rest.find(": \"") else { break };
        let after = &rest[open + 3..];
        let Some(close) = after.find('"') else { break };
        paths.insert(after[..close].to_owned());
        rest = &after[close..];
    }
    paths
}

#[test]
fn every_path_the_routers_serve_is_in_the_document() {
    let parts = parts();
    let documented: BTreeSet<&String> = parts.doc.paths.paths.keys().collect();
    let mut served = router_paths(&parts.api);
    served.extend(router_paths(&parts.keys));
    // Guards the reading of the Debug output: a change in axum's format must fail here,
    // not pass with nothing read.
    for known in [
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/workers/{wid}/poll",
        "/v1/keys",
    ] {
        assert!(
            served.contains(known),
            "{known} not read from the routers: {served:?}"
        );
    }
    let missing: Vec<&String> = served.iter().filter(|p| !documented.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "routes without an OpenAPI operation: {missing:?}"
    );
    let ui: BTreeSet<String> = router_paths(&ui());
    assert!(ui.iter().all(|p| p.starts_with(UI_PATH)), "{ui:?}");
}

#[test]
fn routes_that_need_a_key_name_the_bearer_scheme_and_its_answers() {
    let doc = document();
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "only {} operations", ops.len());
    for (method, path, op) in ops {
        let open = scope::need(&method, &path) == Need::Open;
        let responses = &op.responses.responses;
        if open {
            assert!(op.security.is_none(), "{method} {path} is open");
            assert!(!responses.contains_key("401"), "{method} {path}");
        } else {
            let security = op
                .security
                .as_ref()
                .expect("a guarded route names its scheme");
            let json = serde_json::to_value(security).expect("json");
            assert_eq!(json, serde_json::json!([{ BEARER: [] }]), "{method} {path}");
            for status in ["401", "403", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
        if op.request_body.is_some() {
            for status in ["400", "413", "415", "422"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
        for (status, answer) in responses {
            let RefOr::T(answer) = answer else {
                panic!("{method} {path} {status}: a reference")
            };
            if status.starts_with('4') || status.starts_with('5') {
                let json = serde_json::to_string(&answer.content).expect("json");
                let error_or_ready = json.contains(ERROR_BODY) || path == "/health/ready";
                assert!(error_or_ready, "{method} {path} {status}: {json}");
            }
            if status == "503" || status == "504" {
                assert!(
                    answer.headers.contains_key("Retry-After"),
                    "{method} {path}"
                );
            }
        }
    }
}

#[test]
fn the_document_and_the_page_are_open() {
    for path in [DOCUMENT_PATH, UI_PATH, "/docs/", "/docs/index.html"] {
        assert_eq!(scope::need(&Method::GET, path), Need::Open, "{path}");
    }
    let doc = document();
    assert_eq!(
        serde_json::to_value(&doc).expect("json")["openapi"],
        serde_json::json!("3.1.0")
    );
}
