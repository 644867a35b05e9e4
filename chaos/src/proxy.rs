//! A TCP link that can be cut: how the loopback backend partitions processes that all
//! share 127.0.0.1.
//!
//! Every connection between two nodes, and from a node to Redis, goes through a [`Link`].
//! Cutting it does what a network partition does, not what a crash does: no connection
//! is reset, bytes simply stop arriving (in both directions) and new connections hang
//! before they reach the other side. Healing lets the held bytes through, as TCP
//! retransmission would.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a new connection keeps trying to reach a peer that is not listening (killed
/// and not restarted yet) before it gives up.
const UPSTREAM_PATIENCE: Duration = Duration::from_secs(15);

/// A listening address that forwards every connection to `upstream` unless cut.
pub struct Link {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, open) = watch::channel(false);
        let task = tokio::spawn(serve(listener, upstream, open));
        Ok(Self { addr, cut, task })
    }

    /// Where to connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops every byte, both ways, on existing and new connections.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets bytes through again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    while let Ok((down, _)) = listener.accept().await {
        tokio::spawn(pipe(down, upstream, cut.clone()));
    }
}

/// Waits until the link is not cut.
async fn open(cut: &mut watch::Receiver<bool>) {
    // An error means the link was dropped: the task is aborted right after.
    let _ = cut.wait_for(|cut| !*cut).await;
}

async fn pipe(down: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let deadline = tokio::time::Instant::now() + UPSTREAM_PATIENCE;
    let up = loop {
        open(&mut cut).await;
        match TcpStream::connect(upstream).await {
            Ok(up) => break up,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (down_read, down_write) = down.into_split();
    let (up_read, up_write) = up.into_split();
    // Either side closing closes both, as a crash of either end would.
    tokio::select! {
        _ = copy(down_read, up_write, cut.clone()) => {}
        _ = copy(up_read, down_write, cut) => {}
    }
}

async fn copy(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut cut: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        open(&mut cut).await;
        to.write_all(&buf[..n]).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> bool {
        s.write_all(msg).await.expect("write");
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(within, s.read_exact(&mut got))
            .await
            .is_ok()
            && got == msg
    }

    #[tokio::test]
    async fn forwards_holds_while_cut_and_delivers_after_heal() {
        let link = Link::start(echo_server().await).await.expect("link");
        let mut s = TcpStream::connect(link.addr()).await.expect("connect");
        assert!(round_trip(&mut s, b"ping", Duration::from_secs(5)).await);

        link.cut();
        assert!(
            !round_trip(&mut s, b"lost?", Duration::from_millis(300)).await,
            "nothing crosses a cut link"
        );
        link.heal();
        let mut held = vec![0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut held))
            .await
            .expect("held bytes arrive after the heal")
            .expect("read");
        assert_eq!(&held, b"lost?");
    }

    #[tokio::test]
    async fn new_connections_wait_for_the_heal() {
        let link = Link::start(echo_server().await).await.expect("link");
        link.cut();
        let mut s = TcpStream::connect(link.addr()).await.expect("connect");
        assert!(!round_trip(&mut s, b"x", Duration::from_millis(300)).await);
        link.heal();
        let mut got = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("answered after the heal")
            .expect("read");
        assert_eq!(&got, b"x");
    }
}
