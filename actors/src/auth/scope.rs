//! Scopes, and which scope each route needs. Pure.
//!
//! | route | open | `read` | `submit` | `admin` |
//! |---|---|---|---|---|
//! | `GET /health`, `GET /health/ready`, `GET /metrics` (unless `--metrics-auth on`: then `read`, see [`super::Authenticator::need`]) | yes | | | |
//! | `/v1/openapi.json`, `/docs…` (the API's description: no secrets) | yes | | | |
//! | `POST /v1/tasks`, `POST /v1/tasks/batch`, `DELETE /v1/tasks/{id}` | | | yes | yes |
//! | `GET /v1/tasks`, `GET /v1/tasks/{id}` | | yes | yes | yes |
//! | other `GET /v1/…` (`/v1/cluster`) | | yes | | yes |
//! | worker routes: `/v1/workers…`, `POST /v1/tasks/{id}/complete` and `…/fail` | | | yes | yes |
//! | `/v1/keys…` | | | | yes |
//! | anything else (unknown routes: 404 after authentication) | | yes | yes | yes |
//!
//! A worker process is a client that runs tasks: it needs `submit` (or `admin`), and it
//! runs the tasks of every submitter. Which tasks a `submit` key may read or cancel is
//! decided after the route's scope, in [`super::owner`].

use std::fmt;
use std::str::FromStr;

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Create tasks, read and cancel them; run tasks as an HTTP worker.
    Submit,
    /// Read everything.
    Read,
    /// Everything, including managing keys.
    Admin,
}

impl Scope {
    /// The scope's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of `submit`, `read`, `admin`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (expected submit, read or admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, UnknownScope> {
        match s {
            "submit" => Ok(Scope::Submit),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: no key is asked for.
    Open,
    /// A valid key with any scope.
    AnyKey,
    /// Reading tasks: `read`, `submit` or `admin`.
    ReadTasks,
    /// Reading beyond tasks: `read` or `admin`.
    Read,
    /// Creating or cancelling tasks, or running them as a worker: `submit` or `admin`.
    Submit,
    /// Managing keys: `admin`.
    Admin,
}

impl Need {
    /// Whether a key with `scopes` may make a request needing `self`.
    pub fn allows(self, scopes: &[Scope]) -> bool {
        let has = |s: Scope| scopes.contains(&s) || scopes.contains(&Scope::Admin);
        match self {
            Need::Open => true,
            Need::AnyKey => !scopes.is_empty(),
            Need::ReadTasks => has(Scope::Read) || has(Scope::Submit),
            Need::Read => has(Scope::Read),
            Need::Submit => has(Scope::Submit),
            Need::Admin => has(Scope::Admin),
        }
    }
}

/// What a request with `method` on `path` needs (the table in the module docs).
pub fn need(method: &Method, path: &str) -> Need {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] | ["health", "ready"] | ["metrics"] => Need::Open,
        ["v1", "openapi.json"] | ["docs", ..] => Need::Open,
        ["v1", "keys", ..] => Need::Admin,
        ["v1", "workers", ..] => Need::Submit,
        ["v1", "tasks", _, "complete" | "fail"] => Need::Submit,
        ["v1", "tasks", ..] if method == Method::GET => Need::ReadTasks,
        ["v1", "tasks", ..] => Need::Submit,
        ["v1", ..] if method == Method::GET => Need::Read,
        _ => Need::AnyKey,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for scope in [Scope::Submit, Scope::Read, Scope::Admin] {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("root".parse::<Scope>().is_err());
        assert_eq!(
            serde_json::to_string(&Scope::Submit).expect("json"),
            "\"submit\""
        );
    }

    #[test]
    fn routes_need_what_the_table_says() {
        let cases = [
            (Method::GET, "/health", Need::Open),
            (Method::GET, "/health/ready", Need::Open),
            (Method::GET, "/metrics", Need::Open),
            (Method::GET, "/v1/openapi.json", Need::Open),
            (Method::GET, "/docs", Need::Open),
            (Method::GET, "/docs/", Need::Open),
            (Method::GET, "/docs/swagger-ui.css", Need::Open),
            (Method::POST, "/v1/tasks", Need::Submit),
            (Method::POST, "/v1/tasks/batch", Need::Submit),
            (Method::DELETE, "/v1/tasks/x", Need::Submit),
            (Method::GET, "/v1/tasks", Need::ReadTasks),
            (Method::GET, "/v1/tasks/x", Need::ReadTasks),
            (Method::POST, "/v1/tasks/x/complete", Need::Submit),
            (Method::POST, "/v1/tasks/x/fail", Need::Submit),
            (Method::POST, "/v1/workers", Need::Submit),
            (Method::POST, "/v1/workers/w/poll", Need::Submit),
            (Method::GET, "/v1/cluster", Need::Read),
            (Method::GET, "/v1/keys", Need::Admin),
            (Method::POST, "/v1/keys", Need::Admin),
            (Method::DELETE, "/v1/keys/abc", Need::Admin),
            (Method::GET, "/nope", Need::AnyKey),
        ];
        for (method, path, expected) in cases {
            assert_eq!(need(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn each_scope_allows_its_needs_and_admin_allows_all() {
        use Scope::*;
        assert!(Need::Submit.allows(&[Submit]));
        assert!(!Need::Submit.allows(&[Read]));
        assert!(Need::ReadTasks.allows(&[Submit]));
        assert!(Need::ReadTasks.allows(&[Read]));
        assert!(!Need::Read.allows(&[Submit]));
        assert!(!Need::Admin.allows(&[Submit, Read]));
        for need in [
            Need::AnyKey,
            Need::ReadTasks,
            Need::Read,
            Need::Submit,
            Need::Admin,
        ] {
            assert!(need.allows(&[Admin]), "{need:?}");
            assert!(!need.allows(&[]), "{need:?}");
        }
        assert!(Need::Open.allows(&[]));
    }
}
