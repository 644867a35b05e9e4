//! TLS material read from PEM files at start, turned into the rustls configurations the
//! HTTP API ([`https_acceptor`]) and the cluster ([`cluster_tls`]) use. The Redis
//! store's CA is read here too ([`read_ca`]); the `redis` crate builds its own
//! configuration from it.
//!
//! Every configuration uses rustls's aws-lc-rs provider (the one ractor_cluster already
//! builds), TLS 1.2 and 1.3. [`install_provider`] makes it the process default, for the
//! crates (`redis`) that ask rustls for the default.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use taskmesh_cluster::tls::ClusterTls;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::tls::{ClusterTlsFiles, KeyPair};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs the process's default rustls provider (once; later calls are no-ops).
pub(crate) fn install_provider() {
    let _ = aws_lc_rs::default_provider().install_default();
}

/// The certificates of a PEM file (a chain: leaf first).
fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in the file", path.display());
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1). The error never shows the
/// file's contents.
fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("reading the private key from {}", path.display()))
}

/// The CA certificates of a PEM file, as roots to verify peers against.
fn read_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// The bytes of a PEM CA file, checked to hold at least one certificate.
pub(crate) fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_roots(path)?;
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The HTTPS acceptor of `--tls-cert` / `--tls-key`: no client certificates, HTTP/1.1.
pub(crate) fn https_acceptor(pair: &KeyPair) -> anyhow::Result<TlsAcceptor> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(&pair.cert)?, read_key(&pair.key)?)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Mutual TLS between nodes from `--cluster-tls-*`: this node presents its certificate
/// both ways and accepts only peers whose certificate the cluster CA issued.
pub(crate) fn cluster_tls(files: &ClusterTlsFiles) -> anyhow::Result<ClusterTls> {
    let roots = Arc::new(read_roots(&files.ca)?);
    let (certs, key) = (read_certs(&files.pair.cert)?, read_key(&files.pair.key)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .context("--cluster-tls-ca cannot verify peers")?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .context("--cluster-tls-cert and --cluster-tls-key do not make a usable pair")?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .context("--cluster-tls-cert and --cluster-tls-key do not make a usable pair")?;
    let server_name = ServerName::try_from(files.server_name.clone())
        .context("--cluster-tls-server-name is not a DNS name or an IP address")?;
    Ok(ClusterTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        server_name,
    })
}
