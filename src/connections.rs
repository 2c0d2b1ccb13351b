//! Connection limits, shared by the game server and the metrics endpoint: a cap on open
//! connections, an idle timeout, and accept loops that back off on errors instead of spinning.
//!
//! Every accepted socket holds a [`Slot`] (a semaphore permit) for its whole life. A socket is
//! *idle* while the server waits for a request from it and owes it nothing: from accept until its
//! first request (the WebSocket handshake included), and between requests. A lobby socket
//! registered in a game is not idle, however long the game takes: the server owes it pushes.
//! An idle socket is closed after the idle timeout.
//!
//! At the cap a newcomer is not simply refused, or a few hundred silent sockets would lock real
//! players out until the idle timeout. Instead the idle socket that matters least makes room:
//! first sockets that never sent a request (oldest first), then sockets that have (idle longest
//! first). A flood of silent sockets therefore only ever pushes out its own kind, and a player
//! between two requests is closed only when no silent socket is left (the bot reopens it). Only
//! when no open socket is idle is the newcomer refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::shutdown::Shutdown;

/// How long a newcomer waits for the idle socket it displaced to let go of its slot.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// First and largest pause after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this long for a repeated accept error or refusal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The cap and the idle bookkeeping of one listener. Cheap to clone.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    max: usize,
    idle_timeout: Duration,
    /// The idle connections, least worth keeping first; each entry wakes its connection.
    idle: Mutex<BTreeMap<IdleKey, Arc<Notify>>>,
    next_seq: AtomicU64,
}

/// Orders idle connections for eviction: never-served before served, then oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct IdleKey {
    served: bool,
    seq: u64,
}

/// Why an idle wait ended without the peer saying anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idled {
    /// Nothing came within the idle timeout.
    TimedOut,
    /// The connection cap was reached and this slot went to a newcomer.
    Evicted,
}

impl Idled {
    /// The close reason a client sees.
    pub fn reason(self) -> &'static str {
        match self {
            Idled::TimedOut => "idle timeout",
            Idled::Evicted => "idle, and the server is at its connection limit",
        }
    }
}

impl Limits {
    /// At most `max` open connections; an idle one is closed after `idle_timeout`.
    pub fn new(max: usize, idle_timeout: Duration) -> Self {
        Limits {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(max)),
                max,
                idle_timeout,
                idle: Mutex::new(BTreeMap::new()),
                next_seq: AtomicU64::new(0),
            }),
        }
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.inner.max - self.inner.permits.available_permits()
    }

    /// A slot for a newly accepted connection: a free one, or the slot of the idle connection
    /// least worth keeping, which is told to close. `None` when every open connection is busy.
    pub async fn admit(&self) -> Option<Slot> {
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let victim = self.lock_idle().pop_first();
                let (_, wake) = victim?;
                wake.notify_one();
                // The victim closes its socket and drops its slot; a victim that got a request
                // at the same instant keeps it, and the newcomer is refused after the wait.
                let freed = self.inner.permits.clone().acquire_owned();
                tokio::time::timeout(EVICTION_WAIT, freed)
                    .await
                    .ok()?
                    .ok()?
            }
        };
        Some(Slot {
            _permit: permit,
            limits: self.clone(),
            served: false,
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, BTreeMap<IdleKey, Arc<Notify>>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open connection's place under the cap; dropping it frees the place.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    limits: Limits,
    served: bool,
}

impl Slot {
    /// Runs `read`, a wait for the peer's next request, with this connection counted as idle:
    /// `Err` when the idle timeout passed or the slot went to a newcomer first.
    pub async fn wait<F: Future>(&self, read: F) -> Result<F::Output, Idled> {
        let idle = self.idle();
        tokio::select! {
            output = read => Ok(output),
            why = idle.ended() => Err(why),
        }
    }

    /// Notes that the peer sent a request: from now on it is displaced only after every socket
    /// that never did.
    pub fn served(&mut self) {
        self.served = true;
    }

    /// Counts this connection as idle until the guard is dropped (for servers, like hyper's,
    /// that read requests themselves).
    pub fn idle(&self) -> Idle {
        let inner = &self.limits.inner;
        let key = IdleKey {
            served: self.served,
            seq: inner.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        let wake = Arc::new(Notify::new());
        self.limits.lock_idle().insert(key, wake.clone());
        Idle {
            limits: self.limits.clone(),
            key,
            wake,
            since: tokio::time::Instant::now(),
        }
    }
}

/// A connection counted as idle; see [`Slot::idle`].
pub struct Idle {
    limits: Limits,
    key: IdleKey,
    wake: Arc<Notify>,
    since: tokio::time::Instant,
}

impl Idle {
    /// Completes when the idle timeout has passed or the slot went to a newcomer.
    pub async fn ended(&self) -> Idled {
        let deadline = self.since + self.limits.inner.idle_timeout;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => Idled::TimedOut,
            _ = self.wake.notified() => Idled::Evicted,
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.limits.lock_idle().remove(&self.key);
    }
}

/// Accepts the next connection, pausing with a growing delay while accept fails (EMFILE and
/// the like), and logging such failures at most once per `LOG_EVERY`. `None` on shutdown.
pub async fn accept(
    listener: &TcpListener,
    errors: &mut AcceptErrors,
    shutdown: &Shutdown,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.recv() => return None,
        };
        match accepted {
            Ok((stream, _)) => {
                errors.accepted();
                return Some(stream);
            }
            Err(e) => {
                let pause = errors.failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.recv() => return None,
                }
            }
        }
    }
}

/// The state of one listener's accept errors: the next pause and the log throttle.
pub struct AcceptErrors {
    what: &'static str,
    pause: Duration,
    failing: u64,
    log: Throttle,
}

impl AcceptErrors {
    /// `what` names the listener in log lines.
    pub fn new(what: &'static str) -> Self {
        AcceptErrors {
            what,
            pause: ACCEPT_BACKOFF_MIN,
            failing: 0,
            log: Throttle::default(),
        }
    }

    /// Logs the error (throttled) and returns how long to pause before accepting again.
    fn failed(&mut self, e: &io::Error) -> Duration {
        self.failing += 1;
        let what = self.what;
        self.log.warn(|more| {
            tracing::warn!(
                "{what}: accept failed: {e}; backing off{}",
                not_logged(more)
            )
        });
        let pause = self.pause;
        self.pause = (self.pause * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    fn accepted(&mut self) {
        if self.failing > 0 {
            tracing::info!(
                "{}: accepting again after {} failed accepts",
                self.what,
                self.failing
            );
            self.failing = 0;
            self.pause = ACCEPT_BACKOFF_MIN;
        }
    }
}

/// Logs a repeated event at most once per `LOG_EVERY`, saying how many were not logged.
#[derive(Default)]
pub struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// Calls `log` with the number of events not logged since the last line, unless a line
    /// went out less than `LOG_EVERY` ago.
    pub fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
        {
            self.suppressed += 1;
            return;
        }
        self.last = Some(now);
        log(std::mem::take(&mut self.suppressed));
    }
}

fn not_logged(more: u64) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" ({more} more not logged)")
    }
}

/// A refusal, for logs: `"{what}: at its cap of {max} connections, none idle: refusing"`.
pub fn log_refusal(throttle: &mut Throttle, what: &str, limits: &Limits) {
    let max = limits.inner.max;
    throttle.warn(|more| {
        tracing::warn!(
            "{what}: all {max} connections busy, none idle: refusing a new one{}",
            not_logged(more)
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn at_the_cap_a_silent_socket_makes_room_before_a_served_one() {
        let limits = Limits::new(2, Duration::from_secs(60));
        let mut served = limits.admit().await.unwrap();
        served.served();
        let silent = limits.admit().await.unwrap();
        assert_eq!(limits.open(), 2);
        let (served_idle, silent_idle) = (served.idle(), silent.idle());
        let newcomer = tokio::spawn({
            let limits = limits.clone();
            async move { limits.admit().await.is_some() }
        });
        // The silent one is told to go; it drops its slot, and the newcomer gets it.
        assert_eq!(silent_idle.ended().await, Idled::Evicted);
        drop((silent_idle, silent));
        assert!(newcomer.await.unwrap());
        // The served one was left alone.
        let untouched = tokio::time::timeout(Duration::from_millis(50), served_idle.ended()).await;
        assert!(untouched.is_err());
    }

    #[tokio::test]
    async fn at_the_cap_with_nothing_idle_the_newcomer_is_refused() {
        let limits = Limits::new(1, Duration::from_secs(60));
        let _busy = limits.admit().await.unwrap();
        assert!(limits.admit().await.is_none());
    }

    #[tokio::test]
    async fn an_idle_wait_times_out() {
        let limits = Limits::new(1, Duration::from_millis(200));
        let slot = limits.admit().await.unwrap();
        let started = tokio::time::Instant::now();
        let waited = slot.wait(std::future::pending::<()>()).await;
        assert_eq!(waited, Err(Idled::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // The finished wait no longer counts as idle: nothing is left to displace.
        assert!(limits.admit().await.is_none());
    }

    #[test]
    fn accept_backoff_grows_to_its_cap() {
        let mut errors = AcceptErrors::new("test");
        let e = io::Error::other("EMFILE");
        let pauses: Vec<Duration> = (0..10).map(|_| errors.failed(&e)).collect();
        assert_eq!(pauses[0], ACCEPT_BACKOFF_MIN);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), ACCEPT_BACKOFF_MAX);
        errors.accepted();
        assert_eq!(errors.failed(&e), ACCEPT_BACKOFF_MIN);
    }
}
