//! A lean HTTP/1.1 client: one keep-alive connection per [`Conn`], on hyper's
//! connection-level API.
//!
//! The generator shares the CPU with the node it measures, so it skips what a general
//! client does per request (pool lookups, redirects, header bookkeeping): each closed-loop
//! worker owns one connection and sends on it back to back. A connection that fails or
//! times out is dropped and reopened on the next request; [`Conn::opened`] counts the
//! opens, so a run that kept every connection alive shows one per connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A node to send requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// `host:port`: where to connect, and the `Host` header.
    pub authority: String,
    /// `Bearer <key>`, sent as `Authorization` on every request when set.
    pub auth: Option<HeaderValue>,
}

impl Target {
    /// Parses a base URL such as `http://127.0.0.1:8080` (plain HTTP only, no path).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("`{url}` is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("`{url}`: only http:// targets are supported");
        }
        if !matches!(uri.path(), "" | "/") {
            bail!("`{url}`: give the node's base URL, without a path");
        }
        let authority = uri.authority().context("no host in the URL")?;
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_owned(),
            None => format!("{}:80", authority.as_str()),
        };
        Ok(Self {
            url: url.to_owned(),
            authority,
            auth: None,
        })
    }

    /// The same target, with every request sending `key` (`Authorization: Bearer`).
    pub fn with_key(mut self, key: Option<&str>) -> anyhow::Result<Self> {
        self.auth = key
            .map(|key| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                    .context("the API key is not valid in a header")?;
                value.set_sensitive(true);
                Ok::<_, anyhow::Error>(value)
            })
            .transpose()?;
        Ok(self)
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection could not be opened.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection failed while sending or receiving.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a bad path).
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No complete answer within the timeout.
    #[error("timed out")]
    Timeout,
}

impl HttpError {
    /// A short name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Connect(_) => "connect",
            HttpError::Http(_) => "http",
            HttpError::Request(_) => "request",
            HttpError::Timeout => "timeout",
        }
    }
}

/// An HTTP answer: status and the whole body.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

/// One keep-alive connection to a [`Target`], reopened when it fails.
#[derive(Debug)]
pub struct Conn {
    target: Arc<Target>,
    host: HeaderValue,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    opened: u64,
}

impl Conn {
    /// A connection to `target` (opened on first use) whose requests time out after
    /// `timeout`.
    pub fn new(target: Arc<Target>, timeout: Duration) -> anyhow::Result<Self> {
        let host = HeaderValue::from_str(&target.authority)
            .with_context(|| format!("`{}` is not a valid Host header", target.authority))?;
        Ok(Self {
            target,
            host,
            timeout,
            sender: None,
            opened: 0,
        })
    }

    /// The node this connection talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// How many TCP connections this `Conn` has opened.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Opens the connection now unless it is open, so a later request is not charged for
    /// the connect.
    pub async fn connect(&mut self) -> Result<(), HttpError> {
        let open = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !open {
            let sender = tokio::time::timeout(self.timeout, self.open())
                .await
                .map_err(|_| HttpError::Timeout)??;
            self.sender = Some(sender);
        }
        Ok(())
    }

    /// Sends a request (`body` as JSON when given) and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, HttpError> {
        // The sender is taken out and put back only on success: after any failure, or a
        // timeout that drops this future, the next request opens a fresh connection.
        let sender = self.sender.take();
        let timeout = self.timeout;
        let exchange = self.exchange(sender, method, path, body);
        let (sender, answer) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout)??;
        self.sender = Some(sender);
        Ok(answer)
    }

    async fn exchange(
        &mut self,
        sender: Option<SendRequest<Full<Bytes>>>,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(SendRequest<Full<Bytes>>, Answer), HttpError> {
        let mut sender = match sender {
            Some(s) if !s.is_closed() => s,
            _ => self.open().await?,
        };
        sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(auth) = &self.target.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((sender, Answer { status, body }))
    }

    async fn open(&mut self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = TcpStream::connect(&self.target.authority)
            .await
            .map_err(HttpError::Connect)?;
        stream.set_nodelay(true).map_err(HttpError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection's own errors surface on the sender's next request.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.opened += 1;
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_get_a_port_and_refuse_paths_and_https() {
        let t = Target::parse("http://127.0.0.1:8080").expect("valid");
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = Target::parse("http://node-a/").expect("valid");
        assert_eq!(t.authority, "node-a:80");
        assert!(Target::parse("https://node-a").is_err());
        assert!(Target::parse("http://node-a/v1").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
