//! A TCP proxy that can cut every connection at once, or swallow what the
//! broker sends back: requests it already forwarded may be processed while
//! their responses are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug)]
pub struct ChaosProxy {
    pub addr: String,
    target: SharedTarget,
    cuts: watch::Sender<u64>,
    mute: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start() -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target = SharedTarget::default();
        let cuts = watch::Sender::new(0u64);
        let mute = Arc::new(AtomicBool::new(false));
        let task = {
            let target = target.clone();
            let cuts = cuts.clone();
            let mute = mute.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let to = target.get();
                    let mut cut = cuts.subscribe();
                    let mute = mute.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&to).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (client_rx, client_tx) = client.into_split();
                        let (server_rx, server_tx) = server.into_split();
                        let no_mute = Arc::new(AtomicBool::new(false));
                        tokio::select! {
                            () = pipe(client_rx, server_tx, no_mute) => {}
                            () = pipe(server_rx, client_tx, mute) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        ChaosProxy {
            addr,
            target,
            cuts,
            mute,
            task,
        }
    }

    /// While on, everything the broker sends is dropped (requests still
    /// reach it), as when answers are lost on the way back.
    pub fn mute_responses(&self, on: bool) {
        self.mute.store(on, Ordering::SeqCst);
    }

    pub fn forward_to(&self, addr: &str) {
        self.target.set(addr);
    }

    /// Drops every open connection.
    pub fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either side closes, dropping what it reads
/// while `mute` is on.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mute: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !mute.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Where new connections go; set once the broker has its port.
#[derive(Debug, Clone, Default)]
struct SharedTarget(Arc<Mutex<String>>);

impl SharedTarget {
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn set(&self, addr: &str) {
        *self.0.lock().unwrap() = addr.to_string();
    }
}
