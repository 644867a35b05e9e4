//! `--store`: the embedded store or a Redis URL ([`RedisUrl`], whose password never
//! shows in a log line, an error or a `Debug` print).

use anyhow::bail;

/// The task store a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// redb in `--data-dir`: the single-node default.
    Embedded,
    /// A Redis server.
    Redis(RedisUrl),
}

impl std::fmt::Display for StoreKind {
    /// The store for logs, with any password in a Redis URL hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreKind::Embedded => f.write_str("embedded"),
            StoreKind::Redis(url) => url.fmt(f),
        }
    }
}

impl std::str::FromStr for StoreKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "embedded" => Ok(StoreKind::Embedded),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(StoreKind::Redis(RedisUrl(url.to_owned())))
            }
            other => bail!(
                "--store must be `embedded` or a redis:// or rediss:// URL, got `{}`",
                masked(other)
            ),
        }
    }
}

/// A Redis URL (`redis://` or, over TLS, `rediss://`; `[user][:password]@` for ACL).
/// `Display` and `Debug` show it with the password replaced by `***`; only
/// [`RedisUrl::expose`] gives the URL itself, to the Redis client.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL with its password, for the Redis client only: never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the URL asks for TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&masked(&self.0))
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({})", masked(&self.0))
    }
}

/// `url` with the password of its user info replaced by `***`: `scheme://user:***@rest`,
/// or `scheme://***@rest` when the user info has no `:` (which Redis clients may read as
/// a password). The last `@` ends the user info, so a password holding `@` is hidden
/// whole; text without `://` is hidden whole if it holds an `@`.
pub(super) fn masked(url: &str) -> String {
    let Some(at) = url.rfind('@') else {
        return url.to_owned();
    };
    let Some(scheme_end) = url.find("://").map(|i| i + 3).filter(|&i| i <= at) else {
        return format!("***{}", &url[at..]);
    };
    let userinfo = &url[scheme_end..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{}{shown}{}", &url[..scheme_end], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_and_the_rest_kept() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            (
                "rediss://alice:s3cret@db:6380/2",
                "rediss://alice:***@db:6380/2",
            ),
            ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
            ("redis://s3cret@db:6379/0", "redis://***@db:6379/0"),
            ("redis://alice:p@ss:w@rd@db/0", "redis://alice:***@db/0"),
            ("s3cret@db", "***@db"),
        ] {
            assert_eq!(masked(url), shown, "{url}");
        }
    }

    #[test]
    fn display_debug_and_errors_never_show_the_password() {
        let kind: StoreKind = "rediss://alice:s3cret@db:6380/0".parse().expect("valid");
        let StoreKind::Redis(url) = &kind else {
            panic!("not redis: {kind}");
        };
        assert!(url.is_tls());
        assert_eq!(url.expose(), "rediss://alice:s3cret@db:6380/0");
        for text in [kind.to_string(), format!("{kind:?}"), format!("{url:?}")] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("alice:***@db:6380"), "{text}");
        }
        let err = "redis:/alice:s3cret@db"
            .parse::<StoreKind>()
            .expect_err("bad");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("--store"), "{err}");
    }
}
