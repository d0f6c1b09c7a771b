//! The links between brokers, and from clients to brokers, each a small TCP
//! proxy the harness controls: broker i calls broker j through link (i, j),
//! and every client (the workload, `eddy` commands, workers, a broker's own
//! pipeline worker) calls broker j through link ([`CLIENTS`], j), the
//! address j advertises. A fault can cut, black-hole, slow or mute the
//! answers of one link, in one direction or both. The proxies run on one
//! background thread for them all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The `from` of the links clients call the brokers through.
pub const CLIENTS: i32 = 0;

/// What a link does with what is sent over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Passes everything (after the link's delay, if any).
    Open,
    /// Closes every connection and refuses new ones: calls fail at once.
    Cut,
    /// Accepts connections and swallows what is sent: calls hang until
    /// their deadlines, as when a network drops every packet.
    Blackhole,
    /// Passes the calls and swallows the answers: the callee acts on what
    /// it is sent, and the caller never learns it did.
    DropReplies,
}

#[derive(Debug)]
struct State {
    mode: AtomicU8,
    delay_ms: AtomicU64,
    /// Bumped when the link is cut, to close its open connections.
    cuts: watch::Sender<u64>,
}

impl State {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Relaxed) {
            1 => Mode::Cut,
            2 => Mode::Blackhole,
            3 => Mode::DropReplies,
            _ => Mode::Open,
        }
    }
}

/// Every directed link between brokers, and from clients to each broker.
#[derive(Debug)]
pub struct Links {
    /// (from, to) → the address `from` calls `to` at ([`CLIENTS`] for
    /// clients).
    addresses: BTreeMap<(i32, i32), String>,
    states: BTreeMap<(i32, i32), Arc<State>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Links {
    /// Proxies for every ordered pair of distinct brokers and from
    /// [`CLIENTS`] to each, forwarding to `targets[to]`.
    pub fn start(targets: &BTreeMap<i32, String>) -> Links {
        let mut listeners = Vec::new();
        let mut addresses = BTreeMap::new();
        let mut states = BTreeMap::new();
        for from in std::iter::once(CLIENTS).chain(targets.keys().copied()) {
            for (&to, target) in targets {
                if from == to {
                    continue;
                }
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                addresses.insert((from, to), listener.local_addr().unwrap().to_string());
                let state = Arc::new(State {
                    mode: AtomicU8::new(0),
                    delay_ms: AtomicU64::new(0),
                    cuts: watch::Sender::new(0),
                });
                states.insert((from, to), state.clone());
                listeners.push((listener, target.clone(), state));
            }
        }
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                for (listener, target, state) in listeners {
                    let listener = TcpListener::from_std(listener).unwrap();
                    tokio::spawn(serve(listener, target, state));
                }
                let mut stopped = stopped;
                let _ = stopped.wait_for(|&s| s).await;
            });
        });
        Links {
            addresses,
            states,
            stop,
            thread: Some(thread),
        }
    }

    /// The address broker `from` calls broker `to` at.
    pub fn address(&self, from: i32, to: i32) -> &str {
        &self.addresses[&(from, to)]
    }

    /// Sets what the link from `from` to `to` does (one direction only:
    /// `to` still reaches `from` through its own link).
    ///
    /// Its connections close when it is cut, and when it stops swallowing
    /// (a black hole or lost answers ending): TCP never delivers a stream
    /// with a hole in it, so a connection that lost bytes must not go on.
    pub fn set(&self, from: i32, to: i32, mode: Mode) {
        let state = &self.states[&(from, to)];
        let code = match mode {
            Mode::Open => 0,
            Mode::Cut => 1,
            Mode::Blackhole => 2,
            Mode::DropReplies => 3,
        };
        let before = state.mode();
        state.mode.store(code, Ordering::Relaxed);
        let lossy = |m: Mode| matches!(m, Mode::Blackhole | Mode::DropReplies);
        if mode == Mode::Cut || (lossy(before) && before != mode) {
            state.cuts.send_modify(|n| *n += 1);
        }
    }

    /// Delays everything sent over the link from `from` to `to`.
    pub fn delay(&self, from: i32, to: i32, delay: Duration) {
        self.states[&(from, to)]
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn partition(&self, a: i32, b: i32, mode: Mode) {
        self.set(a, b, mode);
        self.set(b, a, mode);
    }

    /// Every link open again, without delay (client links too).
    pub fn heal(&self) {
        for &(from, to) in self.states.keys() {
            self.set(from, to, Mode::Open);
            self.delay(from, to, Duration::ZERO);
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: TcpListener, target: String, state: Arc<State>) {
    while let Ok((client, _)) = listener.accept().await {
        if state.mode() == Mode::Cut {
            continue; // dropped: the caller sees the connection close
        }
        let target = target.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let mut cut = state.cuts.subscribe();
            let Ok(server) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_rx, client_tx) = client.into_split();
            let (server_rx, server_tx) = server.into_split();
            tokio::select! {
                () = pipe(client_rx, server_tx, &state, false) => {}
                () = pipe(server_rx, client_tx, &state, true) => {}
                _ = cut.changed() => {}
            }
        });
    }
}

/// Copies one direction of a connection (`replies`: the callee's answers),
/// applying the link's delay and swallowing what its mode drops.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: &State,
    replies: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match state.mode() {
            Mode::Cut => return,
            Mode::Blackhole => continue,
            Mode::DropReplies if replies => continue,
            Mode::DropReplies | Mode::Open => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
