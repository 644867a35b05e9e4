//! The HTTP side of the client subcommands: one node's API, the key, bounded retries, and
//! the mapping of answers to [`CliError`]s (and so to exit codes).

use std::path::Path;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::args::ClientArgs;

/// Tries of one request when the node is unreachable, rate-limits or is unavailable.
const TRIES: u32 = 3;
/// First delay between two tries; doubled each time.
const BACKOFF: Duration = Duration::from_millis(500);
/// Longest `Retry-After` honoured, so that the tries end within about 5 s.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Timeout of a request that is not a long-poll.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a client subcommand stopped; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// Bad input on our side, or a request the API refused as invalid (exit 2).
    #[error("{0}")]
    Usage(String),
    /// 404 (exit 3).
    #[error("{0}")]
    NotFound(String),
    /// 401 or 403 (exit 4).
    #[error("{0}")]
    Auth(String),
    /// 429, 5xx or no connection, after retrying (exit 5).
    #[error("{0}")]
    Unavailable(String),
}

impl CliError {
    /// The process exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::NotFound(_) => 3,
            Self::Auth(_) => 4,
            Self::Unavailable(_) => 5,
        }
    }
}

/// An answer of the node.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status code.
    pub(crate) status: StatusCode,
    /// The body as JSON (`Null` when empty or not JSON).
    pub(crate) body: Value,
    /// The body as sent.
    pub(crate) bytes: Vec<u8>,
}

impl Reply {
    /// The body of a 2xx answer, or the error the status maps to.
    pub(crate) fn into_ok(self) -> Result<Value, CliError> {
        if self.status.is_success() {
            return Ok(self.body);
        }
        let code = self.body["error"]["code"].as_str().unwrap_or("");
        let message = self.body["error"]["message"].as_str().unwrap_or("");
        let text = format!("{} {code}: {message}", self.status.as_u16());
        Err(match self.status.as_u16() {
            404 => CliError::NotFound(text),
            401 | 403 => CliError::Auth(text),
            429 | 500..=599 => CliError::Unavailable(text),
            _ => CliError::Usage(text),
        })
    }
}

/// The certificates of `--ca-file`, the only roots trusted for `https://`.
fn ca_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, CliError> {
    let unusable = |why: String| CliError::Usage(format!("--ca-file {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(e.to_string()))?;
    if certs.is_empty() {
        return Err(unusable("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// A node's API, spoken with the caller's key.
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Option<HeaderValue>,
}

impl Client {
    /// The client of `args`: its URL, and the key from `--api-key`, `TASKMESH_API_KEY` or
    /// `<data dir>/admin.key`.
    pub(crate) fn new(args: &ClientArgs) -> Result<Self, CliError> {
        let base = Url::parse(&args.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--url {}: not an http:// or https:// URL",
                    args.url
                ))
            })?;
        let key = match &args.api_key {
            Some(key) => Some(key.0.trim().to_owned()),
            None => key_file(&args.data_dir)?,
        };
        let auth = key
            .filter(|key| !key.is_empty())
            .map(|key| {
                let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| CliError::Usage("the API key is not valid in a header".into()))?;
                value.set_sensitive(true);
                Ok::<_, CliError>(value)
            })
            .transpose()?;
        let mut http = reqwest::Client::builder();
        if let Some(path) = &args.ca_file {
            http = http.tls_certs_only(ca_certificates(path)?);
        }
        let http = http
            .build()
            .map_err(|e| CliError::Usage(format!("building the HTTP client: {e}")))?;
        Ok(Self { http, base, auth })
    }

    /// The URL of `segments` (each percent-encoded) under the base URL, with `query`.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        }
        url
    }

    /// Sends a request, retrying what is safe to retry: connections refused (nothing was
    /// sent), and 429 / 503 answers (nothing was done; except `outcome_unknown`). Reads
    /// and cancels are also retried on other transport errors.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Reply, CliError> {
        let idempotent = method == Method::GET || method == Method::DELETE;
        let mut delay = BACKOFF;
        for attempt in 1..=TRIES {
            let last = attempt == TRIES;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout);
            if let Some(auth) = &self.auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if !last && (e.is_connect() || idempotent) => {
                    eprintln!(
                        "taskmesh: cannot reach {}, retrying in {delay:?}",
                        self.base
                    );
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
                Err(e) => {
                    return Err(CliError::Unavailable(format!(
                        "cannot reach {} after {attempt} tries: {}",
                        self.base,
                        error_chain(&e)
                    )));
                }
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Err(CliError::Unavailable(format!(
                        "reading the answer of {}: {}",
                        self.base,
                        error_chain(&e)
                    )));
                }
            };
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let retryable =
                matches!(status.as_u16(), 429 | 503) && body["error"]["code"] != "outcome_unknown";
            if retryable && !last {
                let wait = retry_after.unwrap_or(delay);
                eprintln!(
                    "taskmesh: {} {}, retrying in {wait:?}",
                    status.as_u16(),
                    body["error"]["code"].as_str().unwrap_or("")
                );
                tokio::time::sleep(wait).await;
                delay *= 2;
                continue;
            }
            return Ok(Reply {
                status,
                body,
                bytes: bytes.to_vec(),
            });
        }
        Err(CliError::Unavailable(format!(
            "no answer from {}",
            self.base
        )))
    }

    /// GETs `segments` and returns the body of a 2xx answer.
    pub(crate) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        let url = self.url(segments, query);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT)
            .await?
            .into_ok()
    }

    /// GETs `segments` as text (`/metrics`).
    pub(crate) async fn get_text(&self, segments: &[&str]) -> Result<String, CliError> {
        let url = self.url(segments, &[]);
        let reply = self.call(Method::GET, url, None, REQUEST_TIMEOUT).await?;
        let text = String::from_utf8_lossy(&reply.bytes).into_owned();
        reply.into_ok()?;
        Ok(text)
    }
}

/// The key in `<data_dir>/admin.key`, if that file exists.
fn key_file(data_dir: &Path) -> Result<Option<String>, CliError> {
    let path = data_dir.join("admin.key");
    match std::fs::read_to_string(&path) {
        Ok(key) => Ok(Some(key.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Usage(format!("reading {}: {e}", path.display()))),
    }
}

/// An error and its sources, `: `-separated (reqwest's own text hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
