//! Workers: one [`Core`] each, on its own task, with no lock shared.
//!
//! # Sharding
//!
//! Every message of a transaction and of a dialog carries the same
//! Call-ID; [`trunkvip_proxy::shard_of`] (a hash of it) names the worker
//! that owns it, so each is handled by one worker in arrival order: a 200
//! never overtakes its 180. Answers to health probes (`shard_of` knows
//! their Call-IDs) and whatever arrives at the host socket belong to
//! worker 0.
//!
//! Each worker reads its own UDP socket of the service address
//! (SO_REUSEPORT: the kernel picks the socket by source address and port,
//! so one source's datagrams all reach one worker, in order). It handles
//! what it owns in place and hands the rest to the owner's inbox, a FIFO
//! channel; the tasks that frame TCP and TLS messages hand each to its
//! owner the same way. Either way a source's messages reach their owner in
//! the order they came.
//!
//! Only worker 0 probes the Edges (`health_probing`); its
//! [`Event::EdgeHealth`] is broadcast to the others
//! ([`Core::set_edge_health`]), and the others' [`Event::EdgeFailure`] go
//! to worker 0 ([`Core::report_edge_failure`]), so the Edge pool agrees
//! everywhere.
//!
//! Each worker loops: wait for its inbox, its control channel, its own
//! sockets or the core's next deadline (`poll_timeout`),
//! feed the core all that is ready, then send all it has to send and log
//! its events. Time is `tokio::time::Instant` turned into
//! `std::time::Instant`, so tests can pause the clock.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant, Sleep};
use tracing::{debug, info, warn};
use trunkvip_proxy::{Core, EdgeStatus, Event, Incoming, Transport};
use trunkvip_sip::Message;

use crate::transport::udp::{self, UdpInput};
use crate::transport::Transports;

/// Messages waiting for one worker before receive tasks wait.
pub const INBOX: usize = 8192;

/// Something to proxy.
#[derive(Debug)]
pub enum Work {
    Datagram(Incoming, Bytes),
    Message(Incoming, Message),
}

/// Everything else a worker is told.
#[derive(Debug)]
pub enum Control {
    ConnectionFailed(SocketAddr, Transport),
    /// From the probing worker's [`Event::EdgeHealth`].
    EdgeHealth(usize, bool),
    /// From another worker's [`Event::EdgeFailure`].
    EdgeFailure(usize),
    /// Stop taking new dialogs (SIGTERM).
    Drain,
    Snapshot(oneshot::Sender<Snapshot>),
    /// A record from the peer host of the pair.
    Sync(trunkvip_proxy::pair::SyncRecord),
    /// Every dialog this worker holds, for the peer's resync.
    SyncSnapshot(oneshot::Sender<Vec<trunkvip_proxy::pair::SyncRecord>>),
    /// New carrier targets: a carrier name resolved elsewhere (refresh.rs).
    Carriers(Vec<trunkvip_proxy::CarrierTarget>),
}

/// What the admin endpoint and the drain loop read from a worker.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub status: Vec<EdgeStatus>,
    pub in_flight: usize,
    pub metrics: String,
}

/// How to reach a worker.
#[derive(Clone, Debug)]
pub struct WorkerHandle {
    pub work: mpsc::Sender<Work>,
    pub control: mpsc::UnboundedSender<Control>,
}

/// The receiving ends, given to the worker's task.
#[derive(Debug)]
pub struct Inbox {
    work: mpsc::Receiver<Work>,
    control: mpsc::UnboundedReceiver<Control>,
}

pub fn channel() -> (WorkerHandle, Inbox) {
    let (wt, wr) = mpsc::channel(INBOX);
    let (ct, cr) = mpsc::unbounded_channel();
    (
        WorkerHandle {
            work: wt,
            control: ct,
        },
        Inbox {
            work: wr,
            control: cr,
        },
    )
}

pub fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Asks every worker for a snapshot.
pub async fn snapshots(transports: &Transports) -> Vec<Snapshot> {
    let mut waits = vec![];
    for w in &transports.workers {
        let (tx, rx) = oneshot::channel();
        if w.control.send(Control::Snapshot(tx)).is_ok() {
            waits.push(rx);
        }
    }
    let mut out = vec![];
    for rx in waits {
        if let Ok(s) = rx.await {
            out.push(s);
        }
    }
    out
}

/// The UDP sockets a worker reads itself: its own socket of the service
/// address (SO_REUSEPORT, one per worker) and, for worker 0, the host
/// socket. A datagram another worker owns is handed to its inbox; the rest
/// are handled in place, with no receive task and no queue between.
#[derive(Debug, Default)]
pub struct DirectUdp {
    pub service: Option<UdpInput>,
    pub host: Option<UdpInput>,
}

/// What one worker reads from in a wake-up before it sends: enough to
/// batch a burst, few enough that timers and the other inputs keep their
/// turn.
const BATCH: usize = 32;

/// Runs worker `index` until its inbox closes.
pub async fn run(
    index: usize,
    mut core: Core,
    mut inbox: Inbox,
    mut direct: DirectUdp,
    transports: Arc<Transports>,
) {
    // One timer for the worker's life, moved only when the core's next
    // deadline moves: arming a new one per wake-up costs more than the
    // wake-up's own work.
    let mut sleep = Box::pin(sleep_until(Instant::now()));
    let mut armed: Option<std::time::Instant> = None;
    loop {
        let deadline = core.poll_timeout();
        if deadline != armed {
            if let Some(d) = deadline {
                sleep.as_mut().reset(Instant::from_std(d));
            }
            armed = deadline;
        }
        let open = std::future::poll_fn(|cx| {
            feed(
                cx,
                index,
                &mut core,
                &mut inbox,
                &mut direct,
                &transports,
                armed.map(|_| sleep.as_mut()),
            )
        })
        .await;
        if !open {
            break;
        }
        let t = now();
        if core.poll_timeout().is_some_and(|d| d <= t) {
            core.handle_timeout(t);
        }
        // A timer that fired is re-armed even at an unchanged deadline.
        if armed.is_some_and(|d| d <= t) {
            armed = None;
        }
        let own = direct.service.as_ref().map(UdpInput::socket);
        while let Some(t) = core.poll_transmit() {
            transports.send(t, own).await;
        }
        let mut edge_health = false;
        while let Some(e) = core.poll_event() {
            edge_health |= matches!(e, Event::EdgeHealth { .. });
            event(index, e, &transports);
        }
        // SIP-aware VRRP priority: the probing worker's view.
        if edge_health && index == 0 {
            crate::vip::set_edges_healthy(core.status().iter().any(|e| e.healthy));
        }
        if let Some(link) = crate::pair::LINK.get() {
            while let Some(r) = core.poll_sync() {
                link.publish(r);
            }
        }
    }
    debug!(worker = index, "worker stopped");
}

/// Gives the core all that is ready (control first, a bounded batch of
/// each other input) and is ready once it read anything or the timer is
/// due; `Ready(false)` when the inbox closed.
fn feed(
    cx: &mut Context<'_>,
    index: usize,
    core: &mut Core,
    inbox: &mut Inbox,
    direct: &mut DirectUdp,
    transports: &Transports,
    timer: Option<Pin<&mut Sleep>>,
) -> Poll<bool> {
    let mut fed = false;
    loop {
        match inbox.control.poll_recv(cx) {
            Poll::Ready(Some(c)) => {
                control(index, core, c);
                fed = true;
            }
            Poll::Ready(None) => return Poll::Ready(false),
            Poll::Pending => break,
        }
    }
    for input in [&mut direct.service, &mut direct.host]
        .into_iter()
        .flatten()
    {
        for _ in 0..BATCH {
            let Poll::Ready((from, data)) = input.poll_recv(cx) else {
                break;
            };
            udp::log_in(transports, &from, &data);
            let owner = transports.shard(&data, input.host_side);
            if owner == index {
                core.handle(now(), from, data);
            } else {
                transports.hand_off(owner, from, data);
            }
            // Even a batch that was all handed off counts: the socket may
            // hold more, and only a poll that ends in Pending asks to be
            // woken for it.
            fed = true;
        }
    }
    for _ in 0..BATCH {
        match inbox.work.poll_recv(cx) {
            Poll::Ready(Some(w)) => {
                work(core, w);
                fed = true;
            }
            Poll::Ready(None) => return Poll::Ready(false),
            Poll::Pending => break,
        }
    }
    if fed || timer.is_some_and(|t| t.poll(cx).is_ready()) {
        Poll::Ready(true)
    } else {
        Poll::Pending
    }
}

fn work(core: &mut Core, w: Work) {
    match w {
        Work::Datagram(from, data) => core.handle(now(), from, data),
        Work::Message(from, msg) => core.handle_message(now(), from, msg),
    }
}

fn control(index: usize, core: &mut Core, c: Control) {
    match c {
        Control::ConnectionFailed(dest, t) => core.connection_failed(now(), dest, t),
        Control::EdgeHealth(edge, healthy) => core.set_edge_health(edge, healthy),
        Control::EdgeFailure(edge) => core.report_edge_failure(now(), edge),
        Control::Drain => {
            debug!(worker = index, "draining");
            core.drain(now());
        }
        Control::Sync(r) => core.apply_sync(now(), &r),
        Control::Carriers(list) => {
            if let Err(e) = core.set_carriers(list) {
                warn!(
                    worker = index,
                    "new carrier targets refused, the old ones stay: {e}"
                );
            }
        }
        Control::SyncSnapshot(reply) => {
            let _ = reply.send(core.sync_snapshot(now()));
        }
        Control::Snapshot(reply) => {
            let mut metrics = String::new();
            core.prometheus(&mut metrics);
            let _ = reply.send(Snapshot {
                status: core.status(),
                in_flight: core.in_flight(),
                metrics,
            });
        }
    }
}

fn event(index: usize, e: Event, transports: &Transports) {
    match e {
        Event::EdgeHealth {
            edge,
            name,
            healthy,
        } => {
            if healthy {
                info!(edge = %name, "Edge {name} is Healthy");
            } else {
                warn!(edge = %name, "Edge {name} is Unhealthy");
            }
            transports.broadcast(Some(index), || Control::EdgeHealth(edge, healthy));
        }
        Event::EdgeFailure { edge } => {
            debug!(worker = index, edge, "Edge failure");
            // The probing worker counts its own failures.
            if index != 0 {
                let _ = transports.workers[0]
                    .control
                    .send(Control::EdgeFailure(edge));
            }
        }
        other => debug!(worker = index, "{other:?}"),
    }
}
