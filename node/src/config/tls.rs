//! The TLS flags: HTTPS on the API (`--tls-cert`, `--tls-key`), mutual TLS between
//! nodes (`--cluster-tls-*`) and the CA of a `rediss://` store (`--redis-ca-file`),
//! checked into [`TlsSettings`]. The files are read when the node starts
//! (`crate::tls`).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

/// The TLS flags.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// HTTPS: the API's certificate chain (PEM, leaf first). With --tls-key, the API
    /// speaks HTTPS only (TLS 1.2/1.3); plain HTTP to the port fails.
    #[arg(long, env = "TASKMESH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// HTTPS: the private key of --tls-cert (PEM).
    #[arg(long, env = "TASKMESH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Cluster TLS: this node's certificate (PEM), presented to peers both ways. With
    /// --cluster-tls-key and --cluster-tls-ca (all three or none), sessions between
    /// nodes are mutual TLS; a plaintext peer is refused.
    #[arg(long, env = "TASKMESH_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// Cluster TLS: the private key of --cluster-tls-cert (PEM).
    #[arg(long, env = "TASKMESH_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,

    /// Cluster TLS: the CA certificate(s) (PEM) that issued every node's certificate;
    /// peers without a certificate of theirs are refused.
    #[arg(long, env = "TASKMESH_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,

    /// Cluster TLS: the name every node's certificate must carry (a DNS SAN): peers are
    /// dialled by address, so this fixed name is what is checked.
    #[arg(
        long,
        env = "TASKMESH_CLUSTER_TLS_SERVER_NAME",
        default_value = "taskmesh-node"
    )]
    pub cluster_tls_server_name: String,

    /// Redis over TLS: the CA certificate(s) (PEM) a `rediss://` store's certificate is
    /// checked against, instead of the system's roots.
    #[arg(long, env = "TASKMESH_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
}

/// A certificate chain and its private key, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Mutual TLS between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    /// This node's certificate and key.
    pub pair: KeyPair,
    /// The cluster's CA.
    pub ca: PathBuf,
    /// The name every node's certificate carries.
    pub server_name: String,
}

/// The checked TLS flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// HTTPS on the API; `None` for plain HTTP.
    pub https: Option<KeyPair>,
    /// TLS between nodes; `None` for plain TCP.
    pub cluster: Option<ClusterTlsFiles>,
    /// The CA of a `rediss://` store; `None` for the system's roots.
    pub redis_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Checks `a`: cluster TLS needs all three files and a cluster, the Redis CA a
    /// `rediss://` store.
    pub(super) fn check(a: &TlsArgs, clustered: bool, rediss: bool) -> anyhow::Result<Self> {
        let https = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(KeyPair {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together"),
        };
        let cluster = match (&a.cluster_tls_cert, &a.cluster_tls_key, &a.cluster_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => Some(ClusterTlsFiles {
                pair: KeyPair {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                ca: ca.clone(),
                server_name: a.cluster_tls_server_name.clone(),
            }),
            (None, None, None) => None,
            _ => bail!(
                "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together: \
                 give all three or none"
            ),
        };
        if cluster.is_some() && !clustered {
            bail!(
                "--cluster-tls-* secure the sessions between nodes: set them on a clustered \
                 node (--cluster-cookie with --peers or --discover)"
            );
        }
        if a.redis_ca_file.is_some() && !rediss {
            bail!("--redis-ca-file needs a TLS store URL: --store rediss://…");
        }
        Ok(Self {
            https,
            cluster,
            redis_ca: a.redis_ca_file.clone(),
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
        tls: TlsArgs,
    }

    fn check(args: &[&str], clustered: bool, rediss: bool) -> anyhow::Result<TlsSettings> {
        let w = Wrap::try_parse_from([&["node"], args].concat())?;
        TlsSettings::check(&w.tls, clustered, rediss)
    }

    #[test]
    fn no_flags_mean_no_tls() {
        assert_eq!(
            check(&[], true, true).expect("valid"),
            TlsSettings::default()
        );
    }

    #[test]
    fn https_needs_both_files() {
        let s = check(&["--tls-cert", "c.pem", "--tls-key", "k.pem"], false, false).expect("valid");
        assert_eq!(
            s.https,
            Some(KeyPair {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert!(check(&["--tls-cert", "c.pem"], false, false).is_err());
        assert!(check(&["--tls-key", "k.pem"], false, false).is_err());
    }

    #[test]
    fn cluster_tls_needs_all_three_files_and_a_cluster() {
        let all = [
            "--cluster-tls-cert",
            "c.pem",
            "--cluster-tls-key",
            "k.pem",
            "--cluster-tls-ca",
            "ca.pem",
        ];
        let s = check(&all, true, false).expect("valid");
        let files = s.cluster.expect("cluster tls");
        assert_eq!(files.ca, PathBuf::from("ca.pem"));
        assert_eq!(files.server_name, "taskmesh-node");
        let err = check(&all[..4], true, false).expect_err("two of three");
        assert!(err.to_string().contains("all three"), "{err}");
        let err = check(&all, false, false).expect_err("no cluster");
        assert!(err.to_string().contains("clustered"), "{err}");
    }

    #[test]
    fn the_redis_ca_needs_a_rediss_store() {
        let args = ["--redis-ca-file", "ca.pem"];
        let s = check(&args, false, true).expect("valid");
        assert_eq!(s.redis_ca, Some(PathBuf::from("ca.pem")));
        let err = check(&args, false, false).expect_err("redis://");
        assert!(err.to_string().contains("rediss://"), "{err}");
    }
}
