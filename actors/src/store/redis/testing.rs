//! [`RedisServer`]: a real `redis-server` on a free loopback port, for tests.
//!
//! Built for this crate's tests and, for other crates (the black-box cluster tests), with
//! the `testsuite` feature. The server is killed when the guard drops. A missing
//! `redis-server` is an error that says how to install it: tests that need Redis fail,
//! they are never skipped.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary started, unless the `REDIS_SERVER` environment variable names another.
pub const DEFAULT_BINARY: &str = "redis-server";

/// How long a server may take to answer `PING` after it was started.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// A `redis-server` child process with its own data directory; killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    durable: bool,
    binary: String,
    dir: TempDir,
}

impl RedisServer {
    /// Starts a throw-away server: no RDB snapshots, no AOF, so it is fast and a restart
    /// comes back empty.
    pub fn start() -> io::Result<Self> {
        Self::launch(false)
    }

    /// Starts a server with `appendonly yes` and `appendfsync always` in its own
    /// directory, so every acknowledged write survives [`RedisServer::kill`] (a SIGKILL)
    /// and [`RedisServer::restart`].
    pub fn start_durable() -> io::Result<Self> {
        Self::launch(true)
    }

    fn launch(durable: bool) -> io::Result<Self> {
        let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| DEFAULT_BINARY.into());
        let mut server = Self {
            child: None,
            port: 0,
            durable,
            binary,
            dir: TempDir::new()?,
        };
        // A port found free can be taken before the server binds it; try a few.
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }

    /// The URL of database 0, e.g. `redis://127.0.0.1:41234/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The loopback port the server listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its AOF and log live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean the process is already gone, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: it keeps its connections but answers nothing,
    /// like a hung or paused container.
    pub fn pause(&self) -> io::Result<()> {
        self.signal("STOP")
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) -> io::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, name: &str) -> io::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other("redis-server is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -{name} failed: {status}")))
        }
    }

    /// Kills the server if it runs and starts it again on the same port and directory.
    /// A durable server comes back with its data; a throw-away one comes back empty.
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(e) if Instant::now() < deadline && e.kind() != io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the process and waits until it answers `PING`.
    fn spawn(&mut self) -> io::Result<()> {
        let persistence: &[&str] = if self.durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--logfile", "redis.log"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(persistence)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{} not found: run `apt-get install -y redis-server` or \
                         bash tests/run.sh which installs it",
                        self.binary
                    ),
                ),
                _ => e,
            })?;
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            self.kill();
        }
        ready
    }

    /// Polls with `PING` until the server answers `PONG`, it exits, or time runs out.
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "redis-server exited with {status}; its log: {}",
                    self.log_tail()
                )));
            }
            if ping(self.port).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "redis-server did not answer PING; its log: {}",
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One `PING` over a fresh connection; `Ok` only for `+PONG` (not `-LOADING`).
fn ping(port: u16) -> io::Result<()> {
    let timeout = Duration::from_millis(500);
    let addr = (Ipv4Addr::LOCALHOST, port).into();
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"PING\r\n")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.starts_with("+PONG") {
        Ok(())
    } else {
        Err(io::Error::other(format!("PING answered {line:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_fails_with_the_install_hint() {
        let mut server = RedisServer {
            child: None,
            port: 1,
            durable: false,
            binary: "/nonexistent/redis-server".into(),
            dir: TempDir::new().expect("tempdir"),
        };
        let error = server.spawn().expect_err("no such binary");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error
                .to_string()
                .contains("apt-get install -y redis-server"),
            "{error}"
        );
    }
}
