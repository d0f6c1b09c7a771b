//! A TCP proxy that can cut every connection at once: requests it already
//! forwarded may be processed while their responses are lost.

use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct ChaosProxy {
    pub addr: String,
    target: SharedTarget,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl ChaosProxy {
    pub async fn start() -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let target = SharedTarget::default();
        let cuts = watch::Sender::new(0u64);
        let task = {
            let target = target.clone();
            let cuts = cuts.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let to = target.get();
                    let mut cut = cuts.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&to).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        tokio::select! {
                            _ = copy_bidirectional(&mut client, &mut server) => {}
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
            task,
        }
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

/// Where new connections go; set once the broker has its port.
#[derive(Clone, Default)]
struct SharedTarget(Arc<Mutex<String>>);

impl SharedTarget {
    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn set(&self, addr: &str) {
        *self.0.lock().unwrap() = addr.to_string();
    }
}
