//! Flags of the rate limits (enforced with `--auth on`; `taskmesh_actors::rate_limit`):
//! `--key-rate-limit`, `--ip-rate-limit`, `--trusted-proxies`.

use anyhow::Context;
use clap::Args;
use taskmesh_actors::rate_limit::RateLimit;
use taskmesh_actors::rate_limit::client_ip::Cidr;

/// Rate-limit flags.
#[derive(Debug, Clone, Args)]
pub struct RateLimitArgs {
    /// With --auth on: the rate limit of an API key without its own (`rate_limit` of
    /// `POST /v1/keys`), as `<per_sec>[/<burst>]` (burst: twice the rate when left out),
    /// or `off`. Held cluster-wide on the Redis store.
    #[arg(long, env = "TASKMESH_KEY_RATE_LIMIT", default_value = "off")]
    pub key_rate_limit: String,

    /// With --auth on: the rate limit per client IP of requests without a valid API key,
    /// as `<per_sec>[/<burst>]`, or `off`. The default is the seed stack's nginx
    /// `limit_req` (10 r/s, burst 20).
    #[arg(long, env = "TASKMESH_IP_RATE_LIMIT", default_value = "10/20")]
    pub ip_rate_limit: String,

    /// Proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For` is
    /// believed when finding a request's client IP; the header is ignored from anyone
    /// else.
    #[arg(long, env = "TASKMESH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
}

/// The checked values of [`RateLimitArgs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// The limit of a key without its own; `None`: unlimited.
    pub key_default: Option<RateLimit>,
    /// The limit per client IP of requests without a valid key; `None`: unlimited.
    pub ip: Option<RateLimit>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

fn limit(flag: &str, value: &str) -> anyhow::Result<Option<RateLimit>> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value.parse().map(Some).with_context(|| flag.to_owned())
}

impl TryFrom<&RateLimitArgs> for RateLimitSettings {
    type Error = anyhow::Error;

    fn try_from(a: &RateLimitArgs) -> anyhow::Result<Self> {
        let trusted_proxies = a
            .trusted_proxies
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<Cidr>().context("--trusted-proxies"))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            key_default: limit("--key-rate-limit", &a.key_rate_limit)?,
            ip: limit("--ip-rate-limit", &a.ip_rate_limit)?,
            trusted_proxies,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        limits: RateLimitArgs,
    }

    fn settings(args: &[&str]) -> anyhow::Result<RateLimitSettings> {
        let w = Wrap::try_parse_from([&["node"], args].concat())?;
        RateLimitSettings::try_from(&w.limits)
    }

    #[test]
    fn defaults_are_unlimited_keys_and_the_seed_nginx_per_ip() {
        let s = settings(&[]).expect("valid");
        assert_eq!(s.key_default, None);
        assert_eq!(s.ip, Some(RateLimit::new(10, 20).expect("valid")));
        assert!(s.trusted_proxies.is_empty());
    }

    #[test]
    fn limits_and_proxies_parse() {
        let s = settings(&[
            "--key-rate-limit",
            "50/100",
            "--ip-rate-limit",
            "OFF",
            "--trusted-proxies",
            "10.0.0.0/8, 192.168.1.7,fd00::/8",
        ])
        .expect("valid");
        assert_eq!(s.key_default, Some(RateLimit::new(50, 100).expect("valid")));
        assert_eq!(s.ip, None);
        assert_eq!(s.trusted_proxies.len(), 3);
        assert!(s.trusted_proxies[1].contains("192.168.1.7".parse().expect("ip")));
        let s = settings(&["--key-rate-limit", "5"]).expect("valid");
        assert_eq!(s.key_default, Some(RateLimit::new(5, 10).expect("valid")));
    }

    #[test]
    fn bad_values_are_refused_naming_the_flag() {
        for (bad, flag) in [
            (&["--key-rate-limit", "0"][..], "--key-rate-limit"),
            (&["--key-rate-limit", "fast"][..], "--key-rate-limit"),
            (&["--ip-rate-limit", "10/0"][..], "--ip-rate-limit"),
            (
                &["--trusted-proxies", "10.0.0.0/40"][..],
                "--trusted-proxies",
            ),
        ] {
            let err = settings(bad).expect_err("invalid");
            assert!(format!("{err:#}").contains(flag), "{bad:?}: {err:#}");
        }
    }
}
