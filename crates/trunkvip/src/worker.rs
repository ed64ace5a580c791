//! Workers: one [`Core`] each, each on a thread of its own.
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
//! Each worker has its own UDP socket of the service address
//! (SO_REUSEPORT), to send from; the group's datagrams are all steered to
//! worker 0's socket ([`udp::bind_group`]), so one thread reads them in
//! the order they came, and a call's carrier and Edge sides do not land
//! on two threads. A reader handles what its core owns in place. A
//! datagram another worker owns it handles too, holding that core's lock,
//! when that worker is asleep (the lock is free: waking its thread would
//! cost more than the datagram) and the reader keeps up (its batch was not
//! full); otherwise the datagram goes to the owner's inbox, a FIFO channel
//! that wakes it, and whoever next takes that core's lock empties the
//! inbox first. So one thread does the work while one suffices, and the
//! others join in under load. The tasks
//! that frame TCP and TLS messages hand each to its owner's inbox. Either
//! way a source's messages reach their core in the order they came. A
//! core's timers are its owner's: a worker that moved them earlier than
//! the owner meant to wake wakes it.
//!
//! Only worker 0 probes the Edges (`health_probing`); its
//! [`Event::EdgeHealth`] is broadcast to the others
//! ([`Core::set_edge_health`]), and the others' [`Event::EdgeFailure`] go
//! to worker 0 ([`Core::report_edge_failure`]), so the Edge pool agrees
//! everywhere.
//!
//! Each worker is a thread with an event loop of its own (mio): it waits
//! for its sockets, its inbox and control channel (whose waker wakes the
//! loop) or the core's next deadline (`poll_timeout`), feeds the core all
//! that is ready, then sends all it has to send and logs its events. The
//! tokio runtime keeps the rest: TCP and TLS, the admin endpoint, signals.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::{Events, Token};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, enabled, info, warn, Level};
use trunkvip_proxy::{Core, EdgeStatus, Event, Incoming, Origin, Transport};
use trunkvip_sip::Message;

use crate::transport::udp::{self, Scratch, UdpIo, BATCH};
use crate::transport::{stream, Transports};

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
    /// This host took or lost the VIP ([`Core::set_serving`]).
    Serving(bool),
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

/// The receiving ends, given to the worker.
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

pub fn now() -> Instant {
    Instant::now()
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
/// socket, with no receive task and no queue between.
#[derive(Debug, Default)]
pub struct DirectUdp {
    pub service: Option<std::net::UdpSocket>,
    pub host: Option<std::net::UdpSocket>,
}

const SERVICE: Token = Token(0);
const HOST: Token = Token(1);
const WAKE: Token = Token(2);

/// Wakes a worker's event loop: the waker its inbox and control channel
/// call when something arrives while it waits.
struct LoopWaker(mio::Waker);

impl Wake for LoopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Err(e) = self.0.wake() {
            warn!("worker wake-up failed: {e}");
        }
    }
}

/// One worker's core and inbox, behind a lock: its own thread holds it
/// while it works, and another worker's thread takes it (try_lock, never
/// waiting) to handle a datagram for this core while the owner sleeps,
/// instead of waking the owner's thread to do it.
struct Shard {
    core: Core,
    work: mpsc::Receiver<Work>,
    /// When the owner's thread means to wake for this core's timers: a
    /// thread that fed the core and moved its deadline earlier wakes the
    /// owner.
    wake_at: Option<Instant>,
}

fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic elsewhere left the core as it was between two messages.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the workers, each on a thread of its own, in the context of
/// `runtime` (where their TCP and TLS sends spawn their tasks). The
/// threads end with their inboxes, or when the runtime shuts down (a
/// daemon started in a test's runtime must not outlive it).
pub fn start(
    workers: Vec<(Core, Inbox, DirectUdp)>,
    transports: Arc<Transports>,
    runtime: tokio::runtime::Handle,
) -> std::io::Result<()> {
    let mut shards = vec![];
    let mut loops = vec![];
    for (index, (core, inbox, direct)) in workers.into_iter().enumerate() {
        shards.push(Mutex::new(Shard {
            core,
            work: inbox.work,
            wake_at: None,
        }));
        loops.push(Loop::new(index, inbox.control, direct, transports.clone())?);
    }
    let shards: Arc<[Mutex<Shard>]> = shards.into();
    let wakers: Arc<[Waker]> = loops.iter().map(|l| l.waker.clone()).collect();
    for mut lp in loops {
        lp.shards = shards.clone();
        lp.wakers = wakers.clone();
        let stop = StopOnDrop(lp.stop.clone(), lp.waker.clone());
        runtime.spawn(async move {
            let _stop = stop;
            std::future::pending::<()>().await
        });
        let rt = runtime.clone();
        std::thread::Builder::new()
            .name(format!("trunkvip-w{}", lp.index))
            .spawn(move || {
                let _rt = rt.enter();
                lp.run();
            })?;
    }
    Ok(())
}

/// Held by a task of the runtime: dropped with it, it stops the worker.
struct StopOnDrop(Arc<AtomicBool>, Waker);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        self.1.wake_by_ref();
    }
}

/// A worker's event loop: mio over its UDP sockets and a waker for its
/// channels, with its core's next deadline as the wait's timeout. A thin
/// loop of its own rather than a tokio task: a runtime's scheduler and
/// timer wheel cost more per wake-up than the datagram's own work here
/// (BENCHMARKS.md).
struct Loop {
    index: usize,
    control: mpsc::UnboundedReceiver<Control>,
    transports: Arc<Transports>,
    poll: mio::Poll,
    waker: Waker,
    service: Option<UdpIo>,
    /// Worker 0's: probes leave from it and their answers come to it.
    host: Option<UdpIo>,
    batch: Vec<(Incoming, Bytes, usize)>,
    /// The channels may hold something: the waker fired (or the last
    /// round left the inbox unfinished) since they were last found empty.
    /// Their waker stays registered until it fires, so until then there is
    /// nothing to look for, and the look costs cache misses on every round.
    channels_ready: bool,
    stop: Arc<AtomicBool>,
    shards: Arc<[Mutex<Shard>]>,
    wakers: Arc<[Waker]>,
}

impl Loop {
    fn new(
        index: usize,
        control: mpsc::UnboundedReceiver<Control>,
        direct: DirectUdp,
        transports: Arc<Transports>,
    ) -> std::io::Result<Self> {
        let poll = mio::Poll::new()?;
        let mut service = direct
            .service
            .map(|s| UdpIo::new(s, false, SERVICE))
            .transpose()?;
        let mut host = direct.host.map(|s| UdpIo::new(s, true, HOST)).transpose()?;
        for s in [&mut service, &mut host].into_iter().flatten() {
            s.register(poll.registry())?;
        }
        let waker = Arc::new(LoopWaker(mio::Waker::new(poll.registry(), WAKE)?)).into();
        Ok(Self {
            index,
            control,
            transports,
            poll,
            waker,
            service,
            host,
            batch: Vec::with_capacity(BATCH),
            channels_ready: true,
            stop: Arc::default(),
            shards: Arc::new([]),
            wakers: Arc::new([]),
        })
    }

    /// Runs until the control channel closes: with its own core locked,
    /// take control messages, the inbox and due timers, read its sockets
    /// (feeding its own core, another worker's when that one sleeps, or
    /// that worker's inbox), send, then unlock and wait, unless an input
    /// may hold more.
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        let mut scratch = Scratch::default();
        let shards = self.shards.clone();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let mut own = lock(&shards[self.index]);
            let Some(mut busy) = self.own_round(&mut own) else {
                break;
            };
            let t = now();
            for which in [SERVICE, HOST] {
                let input = match which {
                    SERVICE => self.service.as_mut(),
                    _ => self.host.as_mut(),
                };
                let Some(input) = input else { continue };
                let host_side = input.host_side;
                while self.batch.len() < BATCH {
                    let room = BATCH - self.batch.len();
                    let read = input.recv(&mut scratch, t, room, |from, data| {
                        let owner = self.transports.shard(&data, host_side);
                        self.batch.push((from, data, owner));
                    });
                    if read == 0 {
                        break;
                    }
                }
                // A full batch: datagrams are waiting, more than this
                // thread keeps up with alone. The other workers' go to
                // them, awake, rather than being handled here.
                let backlog = self.batch.len() == BATCH;
                busy |= input.may_read(t);
                let mut batch = std::mem::take(&mut self.batch);
                for (from, data, _) in &batch {
                    udp::log_in(&self.transports, from, data);
                }
                // A dialog lives on one core: only the order within each
                // core's share counts. This core's share, then each other
                // core's in one go (one lock, one send); the sort is stable.
                let index = self.index;
                batch.sort_by_key(|d| (d.2 != index, d.2));
                let mut items = batch.drain(..).peekable();
                while let Some(&(_, _, owner)) = items.peek() {
                    let share = std::iter::from_fn(|| items.next_if(|d| d.2 == owner));
                    if owner == index {
                        for (from, data, _) in share {
                            own.core.handle(t, from, data);
                        }
                    } else if backlog {
                        for (from, data, _) in share {
                            self.transports.hand_off(owner, from, data);
                        }
                    } else {
                        self.deliver(&mut scratch, t, &shards[owner], owner, share);
                    }
                }
                drop(items);
                self.batch = batch;
            }
            self.flush(&mut scratch, self.index, &mut own.core);
            let t = now();
            let wake_at = [
                own.core.poll_timeout(),
                self.service.as_ref().and_then(UdpIo::paused_until),
                self.host.as_ref().and_then(UdpIo::paused_until),
            ]
            .into_iter()
            .flatten()
            .min();
            own.wake_at = wake_at;
            drop(own);
            // Busy: only a look at what else became ready meanwhile.
            let timeout = if busy {
                Some(Duration::ZERO)
            } else {
                wake_at.map(|d| d.saturating_duration_since(t))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    warn!(worker = self.index, "event loop: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let registry = self.poll.registry();
            for e in events.iter() {
                let sock = match e.token() {
                    SERVICE => self.service.as_mut(),
                    HOST => self.host.as_mut(),
                    _ => {
                        self.channels_ready = true;
                        None
                    }
                };
                if let Some(s) = sock {
                    // An error or hang-up is read as readable: the read
                    // says what it is.
                    let readable = e.is_readable() || e.is_error() || e.is_read_closed();
                    s.ready(registry, &mut scratch, readable, e.is_writable());
                }
            }
        }
        debug!(worker = self.index, "worker stopped");
    }

    /// The owner's part of a round: every control message and a batch of
    /// the inbox (when their waker fired since they were found empty), due
    /// timers. `Some(true)` when the inbox may hold more, `None` once the
    /// control channel closed.
    fn own_round(&mut self, own: &mut Shard) -> Option<bool> {
        let mut more = false;
        if std::mem::take(&mut self.channels_ready) {
            let mut cx = Context::from_waker(&self.waker);
            loop {
                match self.control.poll_recv(&mut cx) {
                    Poll::Ready(Some(c)) => control(self.index, &mut own.core, c),
                    Poll::Ready(None) => return None,
                    Poll::Pending => break,
                }
            }
            let mut n = 0;
            while n < BATCH {
                match own.work.poll_recv(&mut cx) {
                    Poll::Ready(Some(w)) => work(&mut own.core, w),
                    Poll::Ready(None) => return None,
                    Poll::Pending => break,
                }
                n += 1;
            }
            more = n == BATCH;
            self.channels_ready = more;
        }
        let t = now();
        if own.core.poll_timeout().is_some_and(|d| d <= t) {
            own.core.handle_timeout(t);
        }
        Some(more)
    }

    /// Datagrams for another worker's core: handled here if that worker
    /// is not working (its lock is free), else queued in its inbox. Before
    /// them, whatever is queued there: one source's messages keep their
    /// order.
    fn deliver(
        &mut self,
        scratch: &mut Scratch,
        t: Instant,
        shard: &Mutex<Shard>,
        owner: usize,
        share: impl Iterator<Item = (Incoming, Bytes, usize)>,
    ) {
        let mut s = match shard.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                for (from, data, _) in share {
                    self.transports.hand_off(owner, from, data);
                }
                return;
            }
        };
        while let Ok(w) = s.work.try_recv() {
            work(&mut s.core, w);
        }
        for (from, data, _) in share {
            s.core.handle(t, from, data);
        }
        self.flush(scratch, owner, &mut s.core);
        // Its timers are the owner's to run: wake it if one is now due
        // before it meant to wake.
        if let Some(d) = s.core.poll_timeout() {
            if s.wake_at.is_none_or(|w| d < w) {
                s.wake_at = Some(d);
                self.wakers[owner].wake_by_ref();
            }
        }
    }

    /// Sends what core `index` has to send, from this thread's sockets
    /// (every worker's socket of the service address has the same
    /// address), with what they hold from earlier in the round, and
    /// handles its events. Before the core's lock is released: no later
    /// message of its dialogs, handled by another thread, may overtake
    /// these.
    fn flush(&mut self, scratch: &mut Scratch, index: usize, core: &mut Core) {
        let registry = self.poll.registry();
        while let Some(t) = core.poll_transmit() {
            if enabled!(Level::DEBUG) {
                self.transports.log_transmit(&t);
            }
            match t.transport {
                Transport::Udp => {
                    // Probes come only from a core's timers, which only
                    // its owner runs and flushes in the same round: worker
                    // 0's probes leave from the host socket it holds.
                    let sock = match t.origin {
                        Origin::Host => self.host.as_mut().or(self.service.as_mut()),
                        Origin::Service => self.service.as_mut(),
                    };
                    match sock {
                        Some(s) => s.send(t.payload, t.destination),
                        None => {
                            debug!(destination = %t.destination, "no udp socket for this message: dropped")
                        }
                    }
                }
                Transport::Tcp | Transport::Tls => stream::send(&self.transports, t),
            }
        }
        for s in [&mut self.service, &mut self.host].into_iter().flatten() {
            s.flush(registry, scratch);
        }
        let mut edge_health = false;
        while let Some(e) = core.poll_event() {
            edge_health |= matches!(e, Event::EdgeHealth { .. });
            event(index, e, &self.transports);
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
        Control::Serving(on) => core.set_serving(on),
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
