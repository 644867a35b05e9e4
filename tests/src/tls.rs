//! TLS for the black-box tests: [`TestPki`] makes a CA and certificates signed by it
//! (rcgen, into a temporary directory: no key is ever committed), and [`TlsRedis`] runs
//! a real `redis-server` that speaks TLS only, with an ACL user.

use std::io;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::free_port;

/// The names every certificate of [`TestPki::issue`] carries: loopback by name and
/// address, and the name nodes check in each other's certificates by default.
pub const SANS: &[&str] = &["localhost", "127.0.0.1", "taskmesh-node"];

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// A throw-away certificate authority in a temporary directory.
pub struct TestPki {
    dir: TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    /// A fresh CA, its certificate written to `ca.pem`.
    pub fn new() -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "taskmesh test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), issuer.pem())?;
        Ok(Self { dir, issuer })
    }

    /// The CA certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for server and client use, for [`SANS`], issued by this CA and
    /// written to `<name>.pem` and `<name>.key`.
    pub fn issue(&self, name: &str) -> anyhow::Result<CertFiles> {
        let mut params =
            CertificateParams::new(SANS.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// How long `redis-server` may take to listen.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` on loopback that speaks TLS only (`--port 0`), with its `default`
/// user off and one ACL user allowed everything; killed on drop.
pub struct TlsRedis {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl TlsRedis {
    /// Starts it with a certificate of `pki`, the user `user` with `password`.
    pub fn start(pki: &TestPki, user: &str, password: &str) -> anyhow::Result<Self> {
        let files = pki.issue("redis")?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(binary)
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&files.cert)
            .arg("--tls-key-file")
            .arg(&files.key)
            .arg("--tls-ca-cert-file")
            .arg(pki.ca())
            .args(["--tls-auth-clients", "no"])
            .args(["--user", "default", "off"])
            .args([
                "--user",
                user,
                "on",
                &format!(">{password}"),
                "~*",
                "&*",
                "+@all",
            ])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--logfile", "redis.log"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install -y redis-server)")?;
        let mut server = Self { child, port, dir };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        let addr = (Ipv4Addr::LOCALHOST, self.port).into();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited with {status}: {}", self.log_tail());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not listen: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Its TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://user:password@127.0.0.1:<port>/0`.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!("rediss://{user}:{password}@127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _: io::Result<_> = self.child.wait();
    }
}
