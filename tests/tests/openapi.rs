//! The OpenAPI document and `/docs`, black-box, against a node with `--auth on`:
//!
//! - the document the binary serves equals the committed `docs/openapi.json`
//!   (`UPDATE_OPENAPI=1 cargo nextest run -p integration-tests -E 'test(openapi)'`
//!   rewrites the file);
//! - every operation of the document is served: calling each path and method answers
//!   something other than the router's own 404 (`no such route`) or 405, and every other
//!   method on a documented path answers 405 (the actors crate's unit test checks the
//!   reverse: every path of the router is in the document);
//! - `docs/api.md` names every operation of the document, and nothing else;
//! - `/docs` serves Swagger UI from the binary: no file from another host, and it reads
//!   `/v1/openapi.json`. The document and the page are open; the API is not.
//!
//! The schemathesis run against a live node is `tests/schemathesis.sh` (run by
//! `tests/run.sh`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, ensure};
use integration_tests::{Answer, TestNode};
use reqwest::Method;
use serde_json::{Value, json};

/// The committed copy of the document.
fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// The admin key the node wrote to `<data-dir>/admin.key`.
fn admin_key(node: &TestNode) -> anyhow::Result<String> {
    let path = node.data_dir.join("admin.key");
    let key = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(key.trim().to_owned())
}

async fn auth_node() -> anyhow::Result<TestNode> {
    TestNode::start_temp(&["--auth", "on"]).await
}

/// The document as the node serves it, fetched without a key.
async fn served(node: &TestNode) -> anyhow::Result<Value> {
    let answer = node
        .send(node.anonymous()?.get(node.url("/v1/openapi.json")))
        .await?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer.header("content-type") == Some("application/json"),
        "{answer:?}"
    );
    Ok(answer.body)
}

/// Every (method, path) of a document.
fn operations(doc: &Value) -> anyhow::Result<BTreeSet<(String, String)>> {
    let paths = doc["paths"].as_object().context("paths")?;
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for method in item.as_object().context("path item")?.keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    Ok(out)
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Where two JSON values first differ, as a JSON pointer.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => first_difference(p, q, &here),
                    _ => Some(here),
                }
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(at.to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_served_document_is_the_committed_one() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let text = node
        .http
        .get(node.url("/v1/openapi.json"))
        .send()
        .await?
        .text()
        .await?;
    let doc: Value = serde_json::from_str(&text)?;
    ensure!(doc["openapi"] == "3.1.0", "{}", doc["openapi"]);
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        // As served: the operations in the order of the code, not sorted.
        std::fs::write(&path, text + "\n")?;
        return Ok(());
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
    )?;
    if let Some(at) = first_difference(&committed, &doc, "") {
        anyhow::bail!(
            "docs/openapi.json differs from the document the node serves (first at `{at}`).\n\
             If the change to the API is meant, update the file with\n    \
             UPDATE_OPENAPI=1 cargo nextest run -p integration-tests -E 'test(the_served_document_is_the_committed_one)'\n\
             and commit it (and update docs/api.md to match)."
        );
    }
    Ok(())
}

/// A concrete path for a templated one: `{id}` a task id that names no task, `{wid}` a
/// worker id no node gave.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-7000-8000-000000000000")
        .replace("{wid}", "no-such-worker")
}

/// Whether an answer is the router's own (no route for the path, or not for the method)
/// rather than a handler's.
fn from_router(answer: &Answer) -> bool {
    answer.status == 405 || (answer.status == 404 && answer.error_message() == "no such route")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_operation_is_served_and_no_other_method() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let key = admin_key(&node)?;
    let doc = served(&node).await?;
    let ops = operations(&doc)?;
    ensure!(ops.len() >= 20, "only {} operations", ops.len());
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        for method in METHODS {
            let documented = ops.contains(&(method.to_owned(), path.clone()));
            let mut request = node
                .http
                .request(
                    Method::from_bytes(method.as_bytes())?,
                    node.url(&concrete(path)),
                )
                .bearer_auth(&key);
            if method != "GET" && method != "DELETE" {
                request = request.json(&json!({}));
            }
            let answer = node.send(request).await?;
            if documented {
                ensure!(
                    !from_router(&answer),
                    "{method} {path} is documented but the router does not serve it: {answer:?}"
                );
            } else {
                ensure!(
                    answer.status == 405 && answer.error_code() == "method_not_allowed",
                    "{method} {path} is not documented but answers {answer:?}"
                );
            }
        }
    }
    Ok(())
}

/// The `METHOD /path` pairs `docs/api.md` names in backticks (query strings dropped).
fn named_in_api_md() -> BTreeSet<(String, String)> {
    let text = include_str!("../../docs/api.md");
    let mut out = BTreeSet::new();
    for piece in text.split('`').skip(1).step_by(2) {
        let Some((method, rest)) = piece.split_once(' ') else {
            continue;
        };
        if !METHODS.contains(&method) || !rest.starts_with('/') {
            continue;
        }
        let path = rest.split(['?', ' ']).next().unwrap_or_default();
        out.insert((method.to_owned(), path.to_owned()));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_api_md_names_every_operation_and_no_other() -> anyhow::Result<()> {
    let node = auth_node().await?;
    let documented = operations(&served(&node).await?)?;
    let named: BTreeSet<(String, String)> = named_in_api_md()
        .into_iter()
        .filter(|(_, p)| !p.starts_with("/docs"))
        .collect();
    let unnamed: Vec<_> = documented.difference(&named).collect();
    ensure!(unnamed.is_empty(), "docs/api.md does not name {unnamed:?}");
    let unknown: Vec<_> = named.difference(&documented).collect();
    ensure!(
        unknown.is_empty(),
        "docs/api.md names {unknown:?}, which the OpenAPI document does not have"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn docs_serves_swagger_ui_from_the_binary_and_only_the_api_needs_a_key() -> anyhow::Result<()>
{
    let node = auth_node().await?;
    let anonymous = node.anonymous()?;
    // No key for any of these.
    let page = anonymous.get(node.url("/docs/")).send().await?;
    ensure!(page.status() == 200, "{page:?}");
    let html = page.text().await?;
    ensure!(html.contains("swagger-ui"), "{html}");
    let mut files = vec![
        "swagger-initializer.js".to_owned(),
        "swagger-ui.css".to_owned(),
    ];
    // Every script and style the page loads is one of the node's own files.
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let target = piece.split('"').next().unwrap_or_default();
            ensure!(
                !target.contains("//"),
                "the page loads {target} from another host"
            );
            files.push(target.trim_start_matches("./").to_owned());
        }
    }
    for file in &files {
        let answer = node
            .http
            .get(node.url(&format!("/docs/{file}")))
            .send()
            .await?;
        ensure!(answer.status() == 200, "/docs/{file}: {answer:?}");
    }
    let init = anonymous
        .get(node.url("/docs/swagger-initializer.js"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(init.contains("/v1/openapi.json"), "{init}");
    let redirect = node.send(anonymous.get(node.url("/docs"))).await?;
    ensure!(redirect.status == 200, "/docs: {redirect:?}");
    let api = node.send(anonymous.get(node.url("/v1/tasks"))).await?;
    ensure!(api.status == 401, "{api:?}");
    Ok(())
}
