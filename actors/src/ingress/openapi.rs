//! The API's OpenAPI 3.1 document, generated from the handlers, and the page that shows
//! it.
//!
//! Each handler carries a `#[utoipa::path]` attribute; the routers are built with
//! utoipa-axum's `routes!`, so a route and its operation come from the same call and
//! cannot drift apart. [`parts`] puts the task, worker and key routes together and
//! [`finish`]es the document with what the layers outside the handlers add to every
//! route: the bearer security scheme on each route that needs a key (from
//! [`scope::need`], the table the auth middleware enforces), and the error answers of
//! the auth middleware, the body extractor, the request bounds and `500`.
//!
//! The node serves the document at `GET /v1/openapi.json` and Swagger UI at `/docs`, both
//! open (the document holds no secrets). Swagger UI's files are built into the binary
//! (utoipa-swagger-ui's `vendored` feature): the page needs no network. The document is
//! the same whether the node runs with `--auth on` or not: it lists `/v1/keys`, which
//! only exists with auth on. `docs/openapi.json` is a copy that a test keeps equal.

use axum::body::Bytes;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    self, ContentBuilder, HeaderBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr,
    Response as Answer, ResponseBuilder, Type,
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::IngressState;
use super::server::EXEMPT;
use crate::auth::scope::{self, Need};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/v1/openapi.json";

/// Where Swagger UI is served.
pub const UI_PATH: &str = "/docs";

/// The name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// The schema every error answer has.
const ERROR_BODY: &str = "ErrorBody";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "taskmesh",
        description = "The HTTP API of a taskmesh node. Every node serves the same API; \
            any node accepts any request. With `--auth on` every route but `/health`, \
            `/health/ready`, `/metrics`, `/v1/openapi.json` and `/docs` needs \
            `Authorization: Bearer tm_…` with the scope the route names. Errors are \
            `{\"error\": {\"code\", \"message\", \"request_id\"}}` with a stable `code` \
            (docs/api.md lists them).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "tasks", description = "Submit, read, list and cancel tasks."),
        (name = "workers", description = "Worker processes of external kinds lease tasks and report them."),
        (name = "keys", description = "API keys (admin; only with `--auth on`)."),
        (name = "cluster", description = "The cluster as this node sees it."),
        (name = "health", description = "Probes and metrics (open)."),
        (name = "docs", description = "This document (open)."),
    )
)]
struct ApiDoc;

/// The routers and the document built from the same `routes!` calls.
pub struct Parts {
    /// Every route but the keys API's.
    pub api: Router<IngressState>,
    /// The keys API's routes (the node serves them with `--auth on` only).
    pub keys: Router<IngressState>,
    /// The whole document, keys included.
    pub doc: openapi::OpenApi,
}

/// The node's routes and its document.
pub fn parts() -> Parts {
    let (api, mut doc) = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(super::routes::routes())
        .merge(super::workers::routes())
        .split_for_parts();
    let (keys, keys_doc) = crate::auth::routes::routes().split_for_parts();
    doc.merge(keys_doc);
    finish(&mut doc);
    Parts { api, keys, doc }
}

/// The document the node serves.
pub fn document() -> openapi::OpenApi {
    parts().doc
}

/// The document as the node serves it: pretty JSON, built once per router.
#[derive(Clone, Debug)]
pub struct Served(Bytes);

impl Served {
    /// Serializes `doc`.
    pub fn new(doc: &openapi::OpenApi) -> Self {
        // Serializing a document of plain maps and strings cannot fail; an empty body
        // would fail the snapshot test.
        Self(Bytes::from(doc.to_pretty_json().unwrap_or_default()))
    }
}

/// This document: the API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document.",
        body = serde_json::Value, content_type = "application/json")))]
pub(super) async fn serve_document(Extension(served): Extension<Served>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], served.0).into_response()
}

/// Swagger UI at [`UI_PATH`] (its files are in the binary), reading [`DOCUMENT_PATH`].
pub fn ui() -> Router<IngressState> {
    let config = Config::new([DOCUMENT_PATH])
        // Swagger UI would otherwise load a badge from an online validator.
        .validator_url("none")
        .persist_authorization(true);
    Router::from(SwaggerUi::new(UI_PATH).config(config))
}

/// Adds what the layers outside the handlers give every route: security and the error
/// answers of the middleware, the extractors and the request bounds.
pub fn finish(doc: &mut openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("tm_<key id>_<secret>")
                .description(Some(
                    "An API key; `--auth on` only. The scope each route needs is in its \
                     description.",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::PATCH, &mut item.patch),
            (Method::DELETE, &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                finish_operation(&method, path, operation);
            }
        }
    }
}

/// What `need` asks of a key, for people.
fn needs(need: Need) -> Option<&'static str> {
    Some(match need {
        Need::Open => return None,
        Need::AnyKey => "any valid key",
        Need::ReadTasks => "scope `read`, `submit` or `admin`",
        Need::Read => "scope `read` or `admin`",
        Need::Submit => "scope `submit` or `admin`",
        Need::Admin => "scope `admin`",
    })
}

fn finish_operation(method: &Method, path: &str, operation: &mut Operation) {
    let need = scope::need(method, path);
    let body = operation.request_body.is_some();
    let query = operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Query);
    let guarded = !EXEMPT.contains(&path);
    let mut errors: Vec<(&str, &str)> = Vec::new();
    if body {
        errors.push((
            "400",
            "`malformed_json`: the body is not JSON; `bad_body`: it could not be read.",
        ));
    }
    if query {
        errors.push((
            "400",
            "`invalid_query`: a query parameter has the wrong type or value.",
        ));
    }
    if let Some(text) = needs(need) {
        let scopes = format!("Needs {text} (with `--auth on`).");
        operation.description = Some(match operation.description.take() {
            Some(d) => format!("{d}\n\n{scopes}"),
            None => scopes,
        });
        operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        errors.push((
            "401",
            "`unauthorized`: no key, or a malformed, unknown, revoked or expired one.",
        ));
        errors.push((
            "403",
            "`forbidden`: the key lacks the scope the route needs.",
        ));
    }
    if body {
        errors.push(("413", "`too_large`: the body is over `--max-body-bytes`."));
        errors.push((
            "415",
            "`unsupported_media_type`: no `Content-Type: application/json`.",
        ));
        errors.push((
            "422",
            "`invalid_request`: wrong types, a missing or an unknown field.",
        ));
    }
    if need != Need::Open {
        errors.push(("500", "`internal`: a bug; the node logs the details."));
        errors.push((
            "503",
            "`store_unavailable`: the key could not be checked; retry later.",
        ));
    }
    // A layer that adds an answer to many routes adds it here, under the same condition
    // the layer applies, so the document keeps up with it.
    if need != Need::Open {
        errors.push((
            "429",
            "`rate_limited`: over the key's rate limit (or the client IP's, without a valid key); nothing was done.",
        ));
    }
    if guarded {
        errors.push((
            "503",
            "`overloaded`: the node serves `--max-concurrent-requests` requests already; nothing was done.",
        ));
        errors.push((
            "504",
            "`timeout`: the request ran past `--request-timeout-ms`; it may or may not have taken effect.",
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, text) in errors {
        match responses.get_mut(status) {
            Some(RefOr::T(answer)) => add_error(answer, text),
            _ => {
                responses.insert(status.to_owned(), RefOr::T(error_answer(text)));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(answer) = response else { continue };
        match status.as_str() {
            "401" => {
                let h = HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`."))
                    .build();
                answer.headers.insert("WWW-Authenticate".into(), h);
            }
            "429" | "503" | "504" => {
                let h = HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying."))
                    .build();
                answer.headers.insert("Retry-After".into(), h);
                if status == "429" {
                    for (name, text) in [
                        (
                            "RateLimit-Policy",
                            "The limit: `\"key\";q=<burst>;w=<secs>` (IETF draft).",
                        ),
                        (
                            "RateLimit",
                            "What is left: `\"key\";r=<left>;t=<secs>` (IETF draft).",
                        ),
                    ] {
                        let h = HeaderBuilder::new()
                            .schema(ObjectBuilder::new().schema_type(Type::String))
                            .description(Some(text))
                            .build();
                        answer.headers.insert(name.into(), h);
                    }
                }
            }
            _ => {}
        }
    }
}

fn error_schema() -> RefOr<openapi::schema::Schema> {
    RefOr::Ref(Ref::from_schema_name(ERROR_BODY))
}

fn error_answer(text: &str) -> Answer {
    ResponseBuilder::new()
        .description(text)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(error_schema())).build(),
        )
        .build()
}

/// Adds an error to an answer the handler documents: its text, and the error body unless
/// the answer already has it.
fn add_error(answer: &mut Answer, text: &str) {
    answer.description = format!("{} Or {text}", answer.description);
    let content = answer
        .content
        .entry("application/json".to_owned())
        .or_insert_with(|| ContentBuilder::new().build());
    let is_error = |s: &RefOr<openapi::schema::Schema>| matches!(s, RefOr::Ref(r) if r.ref_location.ends_with(&format!("/{ERROR_BODY}")));
    content.schema = Some(match content.schema.take() {
        None => error_schema(),
        Some(s) if is_error(&s) => s,
        Some(s) => OneOfBuilder::new().item(s).item(error_schema()).into(),
    });
}

#[cfg(test)]
mod tests;
