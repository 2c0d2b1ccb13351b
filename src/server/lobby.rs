//! The lobby socket: a player registers for a game, then hears START, its USER'S TURN pushes and
//! COMPLETE (or TIMED OUT). After a game ends the same socket may register for the next one.
//!
//! The handler holds no game state beyond what it has already told its player: it follows the
//! game's events from the [`super::hub`], re-reads Redis when events may have been missed, and
//! keeps the two timers that make every game end: the lobby timeout and the turn timeout. Every
//! participant's handler arms the turn timer (the current player's first, the others a second
//! later), so a turn times out even if the current player's server process died; the eliminate
//! script only acts once per turn number.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::game::{self, Eliminated, GameEvent, Ready};
use super::hub::HubEvent;
use super::identity;
use super::protocol::{self, game_status, reason, GamePush};
use super::{
    close_going_away, next_request, refuse_and_close, send_json, send_status, Incoming, Shared,
    Socket,
};
use crate::keys::status;
use crate::metrics::Gauge;

/// Extra time the other participants give the current player before they time its turn out.
const OBSERVER_GRACE: Duration = Duration::from_secs(1);
/// Retry pause of a timer whose Redis call failed.
const TIMER_RETRY: Duration = Duration::from_millis(250);

/// What a finished registration leaves the socket to do.
enum Flow {
    /// Stay in this game.
    Stay,
    /// The game is over for this socket: wait for another lobby request.
    Next,
    /// The socket is gone.
    Closed,
}

/// Decrements the connected-players gauge however the handler ends.
struct Connected(Gauge);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn serve(shared: Arc<Shared>, mut ws: Socket) {
    shared.metrics.connected_players.inc();
    let _connected = Connected(shared.metrics.connected_players.clone());
    // Names this socket in its lobby registrations (identity::claim_lobby).
    let socket = format!("{}:{}", shared.server_id, uuid::Uuid::new_v4().simple());
    loop {
        let incoming = tokio::select! {
            incoming = next_request(&mut ws) => incoming,
            _ = shared.shutdown.recv() => {
                close_going_away(&mut ws).await;
                return;
            }
        };
        let text = match incoming {
            Incoming::Text(text) => text,
            Incoming::Refused(r) => {
                if !send_status(&mut ws, r).await {
                    return;
                }
                continue;
            }
            Incoming::Fatal(r, code) => return refuse_and_close(&mut ws, r, code).await,
            Incoming::Closed => return,
        };
        let tokens = protocol::payload_of(&text).and_then(|p| protocol::game_and_user(&p));
        let (g, u) = match tokens {
            Ok(t) => t,
            Err(r) => {
                if !send_status(&mut ws, r).await {
                    return;
                }
                continue;
            }
        };
        let (id, events) = shared.hub.register(&g);
        // One registered lobby socket per (game, user), across every server process.
        let held = match identity::claim_lobby(&shared, &g, &u, &socket).await {
            Ok(held) => held,
            Err(r) => {
                shared.hub.unregister(&g, id);
                if !send_status(&mut ws, r).await {
                    return;
                }
                continue;
            }
        };
        let mut lobby = Lobby {
            shared: &shared,
            ws: &mut ws,
            g: &g,
            u: &u,
            participants: 0,
            start_sent: false,
            last_turn: 0,
            turn_timer: None,
            lobby_timer: None,
        };
        let flow = lobby.play(events).await;
        shared.hub.unregister(&g, id);
        if held {
            // After play: a player that left was taken out of the ready set first.
            identity::release_lobby(&shared, &g, &u, &socket).await;
        }
        if let Flow::Closed = flow {
            return;
        }
    }
}

/// A turn timer: at `at`, eliminate `user` if turn `turn` is still running.
struct TurnTimer {
    at: Instant,
    user: String,
    turn: u64,
}

struct Lobby<'a> {
    shared: &'a Arc<Shared>,
    ws: &'a mut Socket,
    g: &'a str,
    u: &'a str,
    participants: u8,
    start_sent: bool,
    /// Highest turn number handled: each turn is announced at most once.
    last_turn: u64,
    turn_timer: Option<TurnTimer>,
    lobby_timer: Option<Instant>,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Lobby<'_> {
    async fn play(&mut self, mut events: mpsc::UnboundedReceiver<HubEvent>) -> Flow {
        let mut conn = self.shared.redis.conn();
        match game::ready(&mut conn, self.g, self.u, &self.shared.outbox).await {
            Ok(Ready::UnknownGame) => return self.refuse(reason::UNKNOWN_GAME_TOKEN).await,
            Ok(Ready::NotInGame) => return self.refuse(reason::USER_NOT_IN_GAME).await,
            Ok(Ready::Started) => self.shared.game_started(),
            Ok(Ready::Waiting | Ready::Status(_)) => {}
            Err(e) => {
                let r = self.shared.unavailable(&e);
                return self.refuse(r).await;
            }
        }
        self.shared.available();
        let mut flow = self.resync().await;
        while let Flow::Stay = flow {
            let turn_at = self.turn_timer.as_ref().map(|t| t.at);
            flow = tokio::select! {
                event = events.recv() => match event {
                    Some(HubEvent::Game(event)) => self.on_event(event).await,
                    Some(HubEvent::Resync) => self.resync().await,
                    None => Flow::Next,
                },
                incoming = next_request(self.ws) => match incoming {
                    Incoming::Closed => {
                        self.leave().await;
                        Flow::Closed
                    }
                    Incoming::Fatal(r, code) => {
                        self.leave().await;
                        refuse_and_close(self.ws, r, code).await;
                        Flow::Closed
                    }
                    Incoming::Refused(r) => self.reply(r).await,
                    Incoming::Text(_) => self.reply(reason::ALREADY_IN_LOBBY).await,
                },
                _ = sleep_until_opt(turn_at) => self.turn_expired().await,
                _ = sleep_until_opt(self.lobby_timer) => self.lobby_expired().await,
                _ = self.shared.shutdown.recv() => {
                    // This server stops serving the player: like a closed socket, it leaves.
                    self.leave().await;
                    close_going_away(self.ws).await;
                    Flow::Closed
                }
            };
        }
        flow
    }

    async fn refuse(&mut self, r: &str) -> Flow {
        if send_status(self.ws, r).await {
            Flow::Next
        } else {
            Flow::Closed
        }
    }

    async fn reply(&mut self, r: &str) -> Flow {
        if send_status(self.ws, r).await {
            Flow::Stay
        } else {
            self.leave().await;
            Flow::Closed
        }
    }

    async fn push(&mut self, game: &str) -> bool {
        send_json(self.ws, &GamePush::new(self.g, game)).await
    }

    async fn on_event(&mut self, event: GameEvent) -> Flow {
        match event {
            GameEvent::Start { turn, user, at_us } | GameEvent::Turn { turn, user, at_us } => {
                self.lobby_timer = None;
                self.on_turn(turn, &user, Some(at_us)).await
            }
            GameEvent::Complete { .. } => self.finish(game_status::COMPLETE).await,
            GameEvent::TimedOut => self.finish(game_status::TIMED_OUT).await,
        }
    }

    async fn finish(&mut self, how: &str) -> Flow {
        if self.push(how).await {
            Flow::Next
        } else {
            Flow::Closed
        }
    }

    /// Announces turn `turn` if it is this player's and was not announced yet; arms its timer.
    async fn on_turn(&mut self, turn: u64, user: &str, at_us: Option<u64>) -> Flow {
        if turn <= self.last_turn {
            return Flow::Stay;
        }
        if !self.start_sent {
            let mut conn = self.shared.redis.conn();
            match identity::start_for(&mut conn, self.g, self.u).await {
                Ok(start) => {
                    if !send_json(self.ws, &start).await {
                        self.leave().await;
                        return Flow::Closed;
                    }
                    self.start_sent = true;
                }
                Err(e) => {
                    // A later event or resync tries again.
                    self.shared.unavailable(&e);
                    return Flow::Stay;
                }
            }
        }
        self.last_turn = turn;
        let settings = &self.shared.settings;
        let mine = user == self.u;
        let timeout = settings.server_sleep + settings.turn_timeout;
        if mine {
            if !settings.server_sleep.is_zero() {
                tokio::time::sleep(settings.server_sleep).await;
            }
            if !self.push(game_status::USERS_TURN).await {
                self.leave().await;
                return Flow::Closed;
            }
            if let Some(at_us) = at_us {
                let now_us = crate::clock::since_epoch().as_micros() as u64;
                let latency_us = now_us.saturating_sub(at_us);
                self.shared
                    .metrics
                    .turn_latency
                    .observe(latency_us as f64 / 1e6);
                tracing::debug!(
                    "turn announced game={} turn={turn} latency_us={latency_us}",
                    self.g
                );
            }
        }
        let grace = if mine {
            settings.turn_timeout
        } else {
            timeout + OBSERVER_GRACE
        };
        self.turn_timer = Some(TurnTimer {
            at: Instant::now() + grace,
            user: user.to_string(),
            turn,
        });
        Flow::Stay
    }

    /// Re-reads the game and catches up with whatever this socket has not been told.
    async fn resync(&mut self) -> Flow {
        let mut conn = self.shared.redis.conn();
        let view = match game::view(&mut conn, self.g).await {
            Ok(v) => v,
            Err(e) => {
                // The subscription's next re-establishment triggers another resync.
                self.shared.unavailable(&e);
                return Flow::Stay;
            }
        };
        self.participants = view.participants;
        match view.status.as_deref() {
            None => self.refuse(reason::UNKNOWN_GAME_TOKEN).await,
            Some(status::WAITING_LOBBY) => {
                let window = self.shared.settings.lobby_timeout.as_millis() as u64;
                let left = (view.created_ms + window).saturating_sub(crate::clock::now_ms());
                self.lobby_timer = Some(Instant::now() + Duration::from_millis(left));
                Flow::Stay
            }
            Some(status::COMPLETED) => self.finish(game_status::COMPLETE).await,
            Some(status::TIMED_OUT) => self.finish(game_status::TIMED_OUT).await,
            Some(_) => {
                self.lobby_timer = None;
                match view.head {
                    Some(head) => self.on_turn(view.turn, &head, None).await,
                    None => Flow::Stay,
                }
            }
        }
    }

    async fn turn_expired(&mut self) -> Flow {
        let Some(timer) = self.turn_timer.take() else {
            return Flow::Stay;
        };
        let mut conn = self.shared.redis.conn();
        let outbox = &self.shared.outbox;
        match game::eliminate(&mut conn, self.g, &timer.user, Some(timer.turn), outbox).await {
            Ok(outcome) => {
                self.shared.available();
                if outcome != Eliminated::Nothing {
                    tracing::info!(
                        "game {}: {} did not act within TURN_TIMEOUT and is eliminated",
                        self.g,
                        timer.user
                    );
                }
                if let Eliminated::Completed { records } = outcome {
                    self.shared.game_completed(self.g, records);
                }
            }
            Err(e) => {
                self.shared.unavailable(&e);
                self.turn_timer = Some(TurnTimer {
                    at: Instant::now() + TIMER_RETRY,
                    ..timer
                });
            }
        }
        Flow::Stay
    }

    async fn lobby_expired(&mut self) -> Flow {
        self.lobby_timer = None;
        let mut conn = self.shared.redis.conn();
        let window = self.shared.settings.lobby_timeout.as_millis() as u64;
        let outbox = &self.shared.outbox;
        match game::lobby_timeout(&mut conn, self.g, self.participants, window, outbox).await {
            Ok(true) => self.shared.game_timed_out(self.g),
            // Started meanwhile, or not quite due by the creator's clock: look again.
            Ok(false) => return self.resync().await,
            Err(e) => {
                self.shared.unavailable(&e);
                self.lobby_timer = Some(Instant::now() + TIMER_RETRY);
            }
        }
        Flow::Stay
    }

    /// The player's lobby socket is gone: it falls (or leaves the lobby if not started).
    async fn leave(&mut self) {
        let mut conn = self.shared.redis.conn();
        match game::eliminate(&mut conn, self.g, self.u, None, &self.shared.outbox).await {
            Ok(Eliminated::Completed { records }) => self.shared.game_completed(self.g, records),
            Ok(Eliminated::Eliminated) => {
                tracing::info!(
                    "game {}: {} left its lobby and is eliminated",
                    self.g,
                    self.u
                )
            }
            Ok(Eliminated::Nothing) => {}
            Err(e) => {
                self.shared.unavailable(&e);
            }
        }
    }
}
