//! The lobby socket: a player registers for a game, then hears START, its USER'S TURN pushes and
//! COMPLETE (or TIMED OUT). After a game ends the same socket may register for the next one.
//!
//! The handler holds no game state beyond what it has already told its player: it follows the
//! game's events from the [`super::hub`] and re-reads Redis when events may have been missed.
//! It keeps no timers: lobby and turn deadlines live in Redis and every server enforces them
//! ([`super::deadlines`]), so a game ends even when the server holding its sockets is gone.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::game::{self, Eliminated, GameEvent, Ready};
use super::hub::HubEvent;
use super::identity;
use super::protocol::{self, game_status, reason, GamePush};
use super::views;
use super::{
    close_going_away, next_request, next_request_until_shutdown, refuse_and_close, send_json,
    send_status, Incoming, Shared, Socket,
};
use crate::connections::Slot;
use crate::metrics::Gauge;
use crate::pipeline::keys::status;

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

/// Serves lobby registrations until the client leaves or the server shuts down. Between games
/// (and before the first) the socket waits for a request and counts as idle; inside a game it
/// never does, however long the lobby or a turn takes.
pub async fn serve(shared: Arc<Shared>, mut ws: Socket, mut slot: Slot) {
    shared.metrics.connected_players.inc();
    let _connected = Connected(shared.metrics.connected_players.clone());
    // Names this socket in its lobby registrations (the ready script).
    let socket = format!("{}:{}", shared.server_id, uuid::Uuid::new_v4().simple());
    loop {
        let incoming = next_request_until_shutdown(&shared, &mut ws, &mut slot).await;
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
        let tokens = protocol::payload_of(&text)
            .and_then(|p| protocol::GameUserPayload::parse(&p))
            .map(|p| (p.game_token, p.user_token));
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
        let mut lobby = Lobby {
            shared: &shared,
            ws: &mut ws,
            g: &g,
            u: &u,
            socket: &socket,
            held: false,
            over: false,
            participants: 0,
            start_sent: false,
            last_turn: 0,
        };
        let flow = lobby
            .play(events)
            .instrument(tracing::info_span!("game", game = %g))
            .await;
        let release = lobby.held && !lobby.over;
        shared.hub.unregister(&g, id);
        if release {
            // After play: a player that left was taken out of the ready set first. The script
            // that ended a game removed its registrations with it.
            identity::release_lobby(&shared, &g, &u, &socket).await;
        }
        if let Flow::Closed = flow {
            return;
        }
    }
}

struct Lobby<'a> {
    shared: &'a Arc<Shared>,
    ws: &'a mut Socket,
    g: &'a str,
    u: &'a str,
    /// Names this socket in the game's lobby registrations.
    socket: &'a str,
    /// This socket holds the (game, user) registration (the ready script made it).
    held: bool,
    /// The game is over for this socket: COMPLETE or TIMED OUT was pushed.
    over: bool,
    participants: u8,
    start_sent: bool,
    /// Highest turn number handled: each turn is announced at most once.
    last_turn: u64,
}

impl Lobby<'_> {
    async fn play(&mut self, mut events: mpsc::UnboundedReceiver<HubEvent>) -> Flow {
        let mut conn = self.shared.redis.conn();
        let ready = game::ready(&mut conn, self.g, self.u, self.socket, &self.shared.rules);
        match ready.await {
            Ok(ready) => {
                self.held = ready.holds();
                match ready {
                    Ready::UnknownGame => return self.refuse(reason::UNKNOWN_GAME_TOKEN).await,
                    Ready::NotInGame => return self.refuse(reason::USER_NOT_IN_GAME).await,
                    Ready::Taken => return self.refuse(reason::LOBBY_ALREADY_OPEN).await,
                    Ready::Started => self.shared.game_started(),
                    Ready::Waiting | Ready::Status(_) => {}
                }
            }
            Err(e) => {
                // The registration may be stored with only its answer lost: give it up.
                self.held = true;
                let r = self.shared.unavailable(&e);
                return self.refuse(r).await;
            }
        }
        self.shared.available();
        let mut flow = self.resync().await;
        while let Flow::Stay = flow {
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
                self.on_turn(turn, &user, Some(at_us)).await
            }
            GameEvent::Complete { .. } => self.finish(game_status::COMPLETE).await,
            GameEvent::TimedOut => self.finish(game_status::TIMED_OUT).await,
        }
    }

    async fn finish(&mut self, how: &str) -> Flow {
        self.over = true;
        if self.push(how).await {
            Flow::Next
        } else {
            Flow::Closed
        }
    }

    /// Announces turn `turn` if it is this player's and was not announced yet.
    async fn on_turn(&mut self, turn: u64, user: &str, at_us: Option<u64>) -> Flow {
        if turn <= self.last_turn {
            return Flow::Stay;
        }
        if !self.start_sent {
            let mut conn = self.shared.redis.conn();
            match identity::start_for(self.shared, &mut conn, self.g, self.u).await {
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
        if user == self.u {
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
        Flow::Stay
    }

    /// Re-reads the game and catches up with whatever this socket has not been told.
    async fn resync(&mut self) -> Flow {
        let mut conn = self.shared.redis.conn();
        let view = match views::view(&mut conn, &self.shared.rules.layout, self.g).await {
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
            Some(status::WAITING_LOBBY) => Flow::Stay,
            Some(status::COMPLETED) => self.finish(game_status::COMPLETE).await,
            Some(status::TIMED_OUT) => self.finish(game_status::TIMED_OUT).await,
            Some(_) => match view.head {
                Some(head) => self.on_turn(view.turn, &head, None).await,
                None => Flow::Stay,
            },
        }
    }

    /// The player's lobby socket is gone: it falls (or leaves the lobby if not started).
    async fn leave(&mut self) {
        let mut conn = self.shared.redis.conn();
        match game::eliminate(&mut conn, self.g, self.u, None, &self.shared.rules).await {
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
