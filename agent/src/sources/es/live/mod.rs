//! The live macOS source: an Endpoint Security client subscribed to NOTIFY
//! events only (vigil never answers AUTH events, so it can never stall the
//! system), plus libproc socket polling for network attribution
//! ([`sockets`]).
//!
//! The ES handler runs on ES's delivery queue: it converts the message
//! ([`convert`] → [`mapping::to_event`]) and does a non-blocking push. It
//! never waits; a full queue drops the event and counts it, and gaps in
//! `global_seq_num` count what the kernel dropped before delivery.
//!
//! Owns: the ES client and its socket poller. Must not touch: the mapping's
//! meanings (they live in `sources::es::mapping`, shared with eslogger).

mod convert;
mod libproc;
pub mod sockets;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Sender, TrySendError};
use endpoint_sec::sys::es_event_type_t as T;
use endpoint_sec::{version, AuditToken as EsToken, Client, Message};

use crate::pipeline::queue::EventSender;
use crate::sources::es::mapping::{self, EsEvent, MapContext};
pub use sockets::PollerConfig;

/// Settings of the ES source.
#[derive(Debug, Clone)]
pub struct EsSourceConfig {
    pub host_id: String,
    /// Also subscribe to NOTIFY_WRITE (one message per write(2): very
    /// noisy; close with `modified` already reports every changed file).
    pub subscribe_write: bool,
    /// Socket polling for network events; `None` turns it off.
    pub sockets: Option<PollerConfig>,
    /// Environment variables exec events keep (`process.env_vars`).
    pub env_vars: Vec<String>,
}

impl EsSourceConfig {
    pub fn new(host_id: impl Into<String>) -> EsSourceConfig {
        EsSourceConfig {
            host_id: host_id.into(),
            subscribe_write: false,
            sockets: Some(PollerConfig::default()),
            env_vars: crate::sources::es::mapping::default_env_vars(),
        }
    }
}

/// What the source did; `status` shows these.
#[derive(Debug, Default)]
pub struct EsSourceCounters {
    /// Messages ES delivered.
    pub messages: AtomicU64,
    pub mapped: AtomicU64,
    /// Messages without a mapping, or unmodified closes.
    pub skipped: AtomicU64,
    /// Events lost because the pipeline queue was full.
    pub queue_dropped: AtomicU64,
    /// Messages the kernel dropped before delivery (`global_seq_num` gaps).
    pub kernel_dropped: AtomicU64,
    /// Times `global_seq_num` went backwards.
    pub seq_restarts: AtomicU64,
    /// Network events from the socket poller.
    pub connections: AtomicU64,
    /// Connections whose process was gone before it could be identified.
    pub unattributed_connections: AtomicU64,
    pub inbound_skipped: AtomicU64,
    /// Exec notifications the poller's queue had no room for.
    pub exec_watch_dropped: AtomicU64,
}

/// Starting the source failed; the message names the ES error and the fix.
#[derive(Debug, thiserror::Error)]
pub enum EsSourceError {
    #[error("cannot create the Endpoint Security client: {code}: {hint}")]
    NewClient { code: String, hint: &'static str },
    #[error("cannot subscribe to Endpoint Security events: {0}")]
    Subscribe(String),
    #[error("cannot start the Endpoint Security thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// No `global_seq_num` seen yet.
const NO_SEQ: u64 = u64::MAX;

/// State the ES handler reads: everything is atomic or immutable, so the
/// handler takes no lock.
struct Shared {
    ctx: MapContext,
    tx: EventSender,
    counters: Arc<EsSourceCounters>,
    last_seq: AtomicU64,
    exec_pids: Option<Sender<i32>>,
}

impl Shared {
    fn handle(&self, msg: &Message) {
        let c = &self.counters;
        c.messages.fetch_add(1, Relaxed);
        let m = convert::message(msg);
        if let Some(seq) = m.global_seq_num {
            let prev = self.last_seq.swap(seq, Relaxed);
            if prev != NO_SEQ {
                if seq > prev + 1 {
                    c.kernel_dropped.fetch_add(seq - prev - 1, Relaxed);
                } else if seq <= prev {
                    c.seq_restarts.fetch_add(1, Relaxed);
                }
            }
        }
        if let (EsEvent::Exec { target, .. }, Some(tx)) = (&m.event, &self.exec_pids) {
            if let Err(TrySendError::Full(_)) = tx.try_send(target.token.pid) {
                c.exec_watch_dropped.fetch_add(1, Relaxed);
            }
        }
        match mapping::to_event(m, &self.ctx) {
            Ok(e) => {
                if self.tx.push(e) {
                    c.mapped.fetch_add(1, Relaxed);
                } else {
                    c.queue_dropped.fetch_add(1, Relaxed);
                }
            }
            Err(_) => {
                c.skipped.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A running ES client (on its own thread: `es_client_t` must be released
/// on the thread that made it) and socket poller.
pub struct EsSource {
    stop: Arc<AtomicBool>,
    client_thread: Option<JoinHandle<()>>,
    poller_thread: Option<JoinHandle<()>>,
    pub counters: Arc<EsSourceCounters>,
}

/// `(major, minor, patch)` of the running macOS.
fn macos_version() -> Option<(u64, u64, u64)> {
    let v = libproc::sysctl_string("kern.osproductversion")?;
    let mut it = v.trim().split('.').map(|p| p.parse::<u64>().ok());
    let major = it.next()??;
    let minor = it.next().flatten().unwrap_or(0);
    let patch = it.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn subscriptions(cfg: &EsSourceConfig) -> Vec<T> {
    let mut ev = vec![
        T::ES_EVENT_TYPE_NOTIFY_EXEC,
        T::ES_EVENT_TYPE_NOTIFY_FORK,
        T::ES_EVENT_TYPE_NOTIFY_EXIT,
        T::ES_EVENT_TYPE_NOTIFY_CREATE,
        T::ES_EVENT_TYPE_NOTIFY_CLOSE,
        T::ES_EVENT_TYPE_NOTIFY_RENAME,
        T::ES_EVENT_TYPE_NOTIFY_UNLINK,
        T::ES_EVENT_TYPE_NOTIFY_UIPC_CONNECT,
    ];
    if cfg.subscribe_write {
        ev.push(T::ES_EVENT_TYPE_NOTIFY_WRITE);
    }
    // Login, authentication and BTM events exist from macOS 13.
    if version::is_version_or_more(13, 0, 0) {
        ev.extend([
            T::ES_EVENT_TYPE_NOTIFY_AUTHENTICATION,
            T::ES_EVENT_TYPE_NOTIFY_LOGIN_LOGIN,
            T::ES_EVENT_TYPE_NOTIFY_LOGIN_LOGOUT,
            T::ES_EVENT_TYPE_NOTIFY_OPENSSH_LOGIN,
            T::ES_EVENT_TYPE_NOTIFY_LW_SESSION_LOGIN,
            T::ES_EVENT_TYPE_NOTIFY_LW_SESSION_LOGOUT,
            T::ES_EVENT_TYPE_NOTIFY_LW_SESSION_LOCK,
            T::ES_EVENT_TYPE_NOTIFY_LW_SESSION_UNLOCK,
            T::ES_EVENT_TYPE_NOTIFY_BTM_LAUNCH_ITEM_ADD,
        ]);
    }
    ev
}

impl EsSource {
    /// Creates the ES client, subscribes, and starts the socket poller.
    /// Fails with the ES error named when the client cannot be created (not
    /// root, no Full Disk Access, no entitlement, too many clients).
    pub fn start(cfg: EsSourceConfig, tx: EventSender) -> Result<EsSource, EsSourceError> {
        // The crate refuses newer APIs until told the OS version; it must
        // be set before the first client.
        let os = macos_version();
        if let Some((major, minor, patch)) = os.filter(|v| v.0 >= 11) {
            version::set_runtime_version(major, minor, patch);
        }
        let os_text = os.map(|(a, b, c)| format!("{a}.{b}.{c}"));
        let boot = libproc::sysctl_string("kern.bootsessionuuid").map(|u| {
            u.chars()
                .filter(char::is_ascii_hexdigit)
                .take(8)
                .collect::<String>()
        });
        let host_name = sysinfo::System::host_name();
        let ctx = MapContext::macos(
            &cfg.host_id,
            host_name.as_deref(),
            os_text.as_deref(),
            boot.as_deref(),
        )
        .with_env_vars(&cfg.env_vars);

        let counters = Arc::new(EsSourceCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (exec_tx, exec_rx) = match cfg.sockets {
            Some(_) => {
                let (t, r) = channel::bounded(1024);
                (Some(t), Some(r))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            ctx: ctx.clone(),
            tx: tx.clone(),
            counters: Arc::clone(&counters),
            last_seq: AtomicU64::new(NO_SEQ),
            exec_pids: exec_tx,
        });
        let events = subscriptions(&cfg);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), EsSourceError>>();
        let thread_stop = Arc::clone(&stop);
        let client_thread = std::thread::Builder::new()
            .name("es-client".into())
            .spawn(move || client_main(shared, events, ready_tx, thread_stop))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = client_thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = client_thread.join();
                return Err(EsSourceError::Subscribe(
                    "the ES client thread ended before reporting".into(),
                ));
            }
        }
        let poller_thread = match (cfg.sockets, exec_rx) {
            (Some(pc), Some(rx)) => Some(sockets::start(
                pc,
                Arc::new(ctx),
                tx,
                Arc::clone(&counters),
                rx,
                Arc::clone(&stop),
            )?),
            _ => None,
        };
        Ok(EsSource {
            stop,
            client_thread: Some(client_thread),
            poller_thread,
            counters,
        })
    }

    /// Unsubscribes, releases the client and stops the poller.
    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in [self.client_thread.take(), self.poller_thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
    }
}

impl Drop for EsSource {
    fn drop(&mut self) {
        self.stop();
    }
}

fn client_main(
    shared: Arc<Shared>,
    events: Vec<T>,
    ready: mpsc::Sender<Result<(), EsSourceError>>,
    stop: Arc<AtomicBool>,
) {
    // The handler may be called on any ES thread; `Shared` is only atomics,
    // an immutable context and a lock-free queue, so a panic in it cannot
    // leave anything half-updated.
    let handler_state = AssertUnwindSafe(shared);
    let client = Client::new(move |_client: &mut Client<'_>, msg: Message| {
        let state = &handler_state;
        state.handle(&msg);
    });
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            let code = e.to_string();
            let hint = mapping::new_client_error_hint(&code);
            let _ = ready.send(Err(EsSourceError::NewClient { code, hint }));
            return;
        }
    };
    // vigil's own spool and alert writes would otherwise come back as events.
    if let Ok(me) = EsToken::from_pid(std::process::id() as i32) {
        if let Err(e) = client.mute_process(&me) {
            tracing::warn!(error = %e, "could not mute vigil's own process");
        }
    }
    if let Err(e) = client.subscribe(&events) {
        let _ = ready.send(Err(EsSourceError::Subscribe(e.to_string())));
        return;
    }
    let _ = ready.send(Ok(()));
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Err(e) = client.unsubscribe_all() {
        tracing::warn!(error = %e, "es_unsubscribe_all failed");
    }
    drop(client);
}
