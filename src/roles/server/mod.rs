//! `superhero server`: the WebSocket API v1 (`docs/websocket-api.md`) over game state kept in Redis.
//!
//! [`run`] takes a bound listener and a [`Shutdown`], so the CLI, tests and benchmarks start it
//! the same way. Each connection is routed by its URL path: the request/reply routes (login,
//! find, hero, action) live in [`routes`], the long-lived lobby socket in [`lobby`]. The process
//! keeps no game state of its own: every change is a Lua script in [`game`] (reads are in
//! [`views`]), and scripts announce turn changes on a per-game channel that every server process
//! hears through one pattern subscription ([`hub`]). Several processes on one Redis therefore
//! serve one game.
//! Lifecycle records are appended to the log stream by the same scripts ([`game::Rules`]);
//! lobby and turn deadlines are enforced by every process ([`deadlines`]). Players see each
//! other by per-game aliases, never by user token ([`identity`]).
//!
//! Open sockets are capped at MAX_CONNECTIONS and a socket that owes the server a request is
//! closed after IDLE_TIMEOUT; at the cap an idle socket makes room for a newcomer. The policy
//! and why it is so are in [`crate::connections`].

pub mod deadlines;
pub mod game;
pub mod hub;
pub mod identity;
pub mod lobby;
pub mod metrics;
pub mod protocol;
pub mod routes;
pub mod views;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::config::Settings;
use crate::connections::{self, AcceptErrors, Limits, Slot, Throttle};
use crate::pipeline::keys;
use crate::pipeline::redis_conn::{self, Outage, Redis, SubEvent};
use crate::pipeline::shard::{Agreement, Layout};
use crate::shutdown::Shutdown;
use hub::Hub;
use metrics::ServerMetrics;
use protocol::{reason, Route, StatusReply};

/// Largest accepted frame or message: the API's requests are a few hundred bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Per-connection read buffer.
const READ_BUFFER: usize = 4 * 1024;
/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long shutdown waits for connections while Redis is down.
const REDIS_DOWN_GRACE: Duration = Duration::from_secs(1);
/// Longest WebSocket handshake; a shorter IDLE_TIMEOUT applies to the handshake too.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle socket's close frame may take: its slot may be wanted by a newcomer.
const IDLE_CLOSE_WAIT: Duration = Duration::from_millis(250);
/// Sent, without reading the request, to a connection refused at the cap.
const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

pub type Socket = WebSocketStream<TcpStream>;

/// What every connection task shares.
pub struct Shared {
    pub settings: Settings,
    /// This process among the servers sharing Redis (names its lobby registrations).
    pub server_id: String,
    pub redis: Redis,
    pub hub: Hub,
    /// Where the game scripts append lifecycle records.
    pub rules: game::Rules,
    pub metrics: ServerMetrics,
    pub shutdown: Shutdown,
    /// The STARTs of games this process has read (the same for all their participants).
    pub starts: identity::Starts,
    outage: Mutex<Outage>,
    redis_down: AtomicBool,
}

impl Shared {
    /// Logs a Redis failure (once per outage) and gives the reason the client sees.
    pub fn unavailable(&self, error: &dyn std::fmt::Display) -> &'static str {
        self.redis_down.store(true, Ordering::Relaxed);
        let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
        outage.failed(&format!("{error:#}"));
        reason::SERVICE_UNAVAILABLE
    }

    /// Notes a Redis success, closing an outage if one was open.
    pub fn available(&self) {
        if self.redis_down.swap(false, Ordering::Relaxed) {
            let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            outage.recovered();
        }
    }

    /// Counts a game this process completed; its script appended `records` lifecycle records.
    pub fn game_completed(&self, g: &str, records: u64) {
        self.metrics.games_completed.inc();
        self.metrics.records_published.inc_by(records);
        tracing::debug!("game {g} completed");
    }

    /// Counts a lobby this process timed out (its script appended `Game Timed Out`).
    pub fn game_timed_out(&self, g: &str) {
        self.metrics.games_timed_out.inc();
        if self.settings.logger_module == crate::config::LoggerModule::Redis {
            self.metrics.records_published.inc();
        }
        tracing::debug!("game {g} timed out in the lobby");
    }

    /// Counts a game this process started (its script appended `Starting Match`).
    pub fn game_started(&self) {
        self.metrics.games_started.inc();
        if self.settings.logger_module == crate::config::LoggerModule::Redis {
            self.metrics.records_published.inc();
        }
    }
}

/// Times lobby `g` (for `n` players) out now, as its LOBBY_TIMEOUT would: status `Timed Out`,
/// TIMED OUT pushed to its waiting players (by the lobby sockets of whichever server holds
/// them), and the `Game Timed Out` record. For a caller that knows no player can fill the lobby
/// any more (`demo`, once every other bot is done); true when this call timed it out.
pub async fn time_out_lobby_now(
    settings: &Settings,
    redis: &Redis,
    g: &str,
    n: u8,
) -> Result<bool> {
    let layout = Layout::for_role(settings, redis, Agreement::Read).await?;
    let rules = game::Rules::new(settings, layout);
    if !game::lobby_timeout(&mut redis.conn(), g, n, 0, &rules).await? {
        return Ok(false);
    }
    tracing::debug!("game {g} timed out in the lobby: no player left to fill it");
    Ok(true)
}

/// Serves the API on `listener` until `shutdown`, then closes every socket and returns.
#[tracing::instrument(name = "server", skip_all)]
pub async fn run(
    settings: &Settings,
    redis: Redis,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<()> {
    // Before anything is written: every role on this Redis names its keys the same way.
    let layout = Layout::for_role(settings, &redis, Agreement::Store).await?;
    let registry = crate::metrics::registry("server");
    let metrics = ServerMetrics::register(&registry);
    crate::metrics::maybe_serve(settings.metrics_addr, &registry, &shutdown).await?;
    if settings.logger_module != crate::config::LoggerModule::Redis {
        tracing::warn!(
            "LOGGER_MODULE is not 'redis': no lifecycle records are published, workers will receive nothing"
        );
    }
    let hub = Hub::default();
    // On a cluster through every primary: a game's events are heard at once where its scripts
    // run, not tens of milliseconds later through the cluster bus. A turn event heard twice is
    // announced once (its turn number), an end twice ends nothing more.
    let patterns = vec![keys::GAME_EVENTS_PATTERN.to_string()];
    let mut events =
        redis_conn::subscribe_on_every_primary(&redis, patterns, shutdown.clone()).await;
    // Serve nobody before the subscription is live, or the first turn of a game could be missed.
    tokio::select! {
        first = events.recv() => if first.is_none() { return Ok(()); },
        _ = shutdown.recv() => return Ok(()),
    }
    let shared = Arc::new(Shared {
        settings: settings.clone(),
        server_id: uuid::Uuid::new_v4().simple().to_string(),
        redis,
        hub,
        rules: game::Rules::new(settings, layout),
        metrics,
        shutdown: shutdown.clone(),
        starts: identity::Starts::default(),
        outage: Mutex::new(Outage::new("game server")),
        redis_down: AtomicBool::new(false),
    });
    let sweeper = tokio::spawn(deadlines::run(shared.clone()).in_current_span());
    let dispatcher = {
        let shared = shared.clone();
        tokio::spawn(
            async move {
                while let Some(event) = events.recv().await {
                    match event {
                        SubEvent::Subscribed => shared.hub.resync_all(),
                        SubEvent::Message { channel, payload } => {
                            shared.hub.dispatch(&channel, &payload)
                        }
                    }
                }
            }
            .in_current_span(),
        )
    };
    // A Redis that restarted without persistence has no heroes: serve games anyway. Redis gone
    // meanwhile must not hold up a shutdown.
    let reloaded = tokio::select! {
        reloaded = crate::heroes::reload_if_missing(&shared.redis, &shared.rules.layout) => reloaded,
        _ = shutdown.recv() => {
            dispatcher.abort();
            sweeper.abort();
            return Ok(());
        }
    };
    if let Err(e) = reloaded {
        tracing::warn!("cannot check the hero collection: {e:#}");
    }
    tracing::info!(
        "game server listening on ws://{}/api/v1/",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let limits = Limits::new(settings.max_connections, settings.idle_timeout);
    let mut accept_errors = AcceptErrors::new("game server");
    let mut refusals = Throttle::default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = connections::accept(&listener, &mut accept_errors, &shutdown) => {
                let Some(stream) = accepted else { break };
                match limits.admit().await {
                    Some(slot) => {
                        let _ = stream.set_nodelay(true);
                        connections.spawn(serve_connection(shared.clone(), stream, slot).in_current_span());
                    }
                    None => {
                        connections::log_refusal(&mut refusals, "game server", &limits);
                        // Best effort and never blocking: the socket is closed right after.
                        let _ = stream.try_write(REFUSAL);
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.recv() => break,
        }
    }
    drop(listener);
    tracing::info!(
        "game server stopping: closing {} connections",
        connections.len()
    );
    let closing = async { while connections.join_next().await.is_some() {} };
    // A handler waiting on a Redis that is gone waits for as long as the outage lasts: once
    // Redis is known to be down, the sockets get a short grace only.
    let redis_gone = async {
        while !shared.redis_down.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(REDIS_DOWN_GRACE).await;
    };
    tokio::select! {
        _ = tokio::time::timeout(SHUTDOWN_GRACE, closing) => {}
        () = redis_gone => {}
    }
    connections.abort_all();
    dispatcher.abort();
    sweeper.abort();
    Ok(())
}

/// Upgrades one TCP connection, picks the route from its path and serves it; `slot` is its
/// place under MAX_CONNECTIONS, held until it closes.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, slot: Slot) {
    let mut route = None;
    // The handshake API fixes the callback's error type; it is built once per refused handshake.
    #[allow(clippy::result_large_err)]
    let pick_route =
        |request: &Request, response: Response| match Route::from_path(request.uri().path()) {
            Some(r) => {
                route = Some(r);
                Ok(response)
            }
            None => {
                let mut refusal = ErrorResponse::new(Some(format!(
                    "unknown route {}; try /api/v1/login",
                    request.uri().path()
                )));
                *refusal.status_mut() = StatusCode::NOT_FOUND;
                Err(refusal)
            }
        };
    // tungstenite's default 128 KiB read buffer is zero-filled per connection: with five
    // sockets per player that alone is ~64 MiB for 100 players. Requests are tiny; a larger
    // one just takes a few reads.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, pick_route, Some(config));
    // Until its first request a socket is idle, the handshake included: a silent TCP socket
    // is dropped after IDLE_TIMEOUT, or sooner when its slot is wanted.
    let ws = match slot
        .wait(tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake))
        .await
    {
        Ok(Ok(Ok(ws))) => ws,
        Ok(Ok(Err(e))) => {
            tracing::debug!("websocket handshake refused: {e}");
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    let Some(route) = route else { return };
    match route {
        Route::Lobby => lobby::serve(shared, ws, slot).await,
        other => routes::serve(shared, ws, slot, other).await,
    }
}

/// What reading the next request off a socket gave.
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// Something the client must be told about (binary frame).
    Refused(&'static str),
    /// The client broke the protocol in a way that ends the connection (RFC 6455 requires it
    /// for invalid UTF-8; an oversized frame cannot be skipped): tell it why, then close.
    Fatal(&'static str, CloseCode),
    /// The client left.
    Closed,
}

/// Reads the next request frame, answering pings along the way.
pub async fn next_request(ws: &mut Socket) -> Incoming {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Incoming::Text(text.as_str().to_string()),
            Some(Ok(Message::Binary(_))) => return Incoming::Refused(reason::BINARY_FRAMES),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | None => return Incoming::Closed,
            Some(Err(WsError::Utf8(_))) => {
                return Incoming::Fatal(reason::INVALID_UTF8, CloseCode::Invalid)
            }
            Some(Err(WsError::Capacity(e))) => {
                tracing::debug!("refusing an oversized frame: {e}");
                return Incoming::Fatal(reason::MESSAGE_TOO_LARGE, CloseCode::Size);
            }
            Some(Err(e)) => {
                tracing::debug!("websocket read failed: {e}");
                return Incoming::Closed;
            }
        }
    }
}

/// Waits for the next request on a socket that is owed nothing (request/reply sockets between
/// requests, lobby sockets outside a game). Closes the socket, and says `Closed`, once it has
/// been idle for IDLE_TIMEOUT or its slot went to a newcomer at the connection cap.
pub async fn next_request_or_idle(ws: &mut Socket, slot: &mut Slot) -> Incoming {
    match slot.wait(next_request(ws)).await {
        Ok(incoming) => {
            slot.served();
            incoming
        }
        Err(idled) => {
            tracing::debug!("closing a socket: {}", idled.reason());
            close_within(ws, CloseCode::Away, idled.reason(), IDLE_CLOSE_WAIT).await;
            Incoming::Closed
        }
    }
}

/// [`next_request_or_idle`], or `Closed` after a "going away" close when the server shuts
/// down first.
pub async fn next_request_until_shutdown(
    shared: &Shared,
    ws: &mut Socket,
    slot: &mut Slot,
) -> Incoming {
    tokio::select! {
        incoming = next_request_or_idle(ws, slot) => incoming,
        _ = shared.shutdown.recv() => {
            close_going_away(ws).await;
            Incoming::Closed
        }
    }
}

/// Sends one JSON message.
pub async fn send_json(ws: &mut Socket, message: &impl Serialize) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => ws.send(Message::text(text)).await.is_ok(),
        Err(e) => {
            tracing::error!("cannot encode a reply: {e}");
            false
        }
    }
}

/// Sends `{"PAYLOAD": {}, "STATUS": reason}`.
pub async fn send_status(ws: &mut Socket, reason: &str) -> bool {
    send_json(ws, &StatusReply::new(reason)).await
}

/// Closes the socket with a "going away" close frame (server shutdown).
pub async fn close_going_away(ws: &mut Socket) {
    close_with(ws, CloseCode::Away, "server shutting down").await;
}

/// Sends the STATUS reason of a fatal protocol error, then closes with `code`.
pub async fn refuse_and_close(ws: &mut Socket, reason: &'static str, code: CloseCode) {
    let _ = tokio::time::timeout(Duration::from_secs(1), send_status(ws, reason)).await;
    close_with(ws, code, reason).await;
}

async fn close_with(ws: &mut Socket, code: CloseCode, reason: &str) {
    close_within(ws, code, reason, Duration::from_secs(1)).await;
}

async fn close_within(ws: &mut Socket, code: CloseCode, reason: &str, within: Duration) {
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    let _ = tokio::time::timeout(within, ws.close(Some(frame))).await;
}
