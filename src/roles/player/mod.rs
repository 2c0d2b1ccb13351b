//! `superhero player`: a bot that plays the game through the WebSocket API v1 (`docs/websocket-api.md`).
//!
//! It logs in under a name of its own, then plays CLIENT_GAMES games: find a game of
//! PARTICIPANTS players, wait in the lobby, and on each USER'S TURN look up the opponents'
//! heroes and attack a random living one. One socket per route is opened once and reused for
//! every request; one the server closed while it sat unused (IDLE_TIMEOUT, or to make room at
//! its connection cap) is reopened and the request sent again. After any other error the bot
//! drops its sockets, waits CLIENT_SLEEP and reconnects, so it can be started before the server.

use anyhow::Result;
use rand::Rng;

use crate::config::Settings;
use crate::shutdown::Shutdown;
use session::{Failure, Session};

mod session;
mod socket;

/// Options of `superhero player` beyond the shared settings.
#[derive(Clone, Debug, Default)]
pub struct PlayerOptions {
    /// Log in under this name (default: a name unique to the process).
    pub user: Option<String>,
    /// Game size (default: 2 or 3 at random, per game).
    pub participants: Option<u8>,
    /// Receives each finished game's report as soon as it is known (`demo`'s progress bar).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<GameReport>>,
    /// This bot's place on a board shared by bots run in one process (`demo`).
    pub board: Option<BoardSeat>,
}

/// Where a bot of a group stands, as far as joining games goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotState {
    /// Between games: it may ask for a game (and so join any open lobby) at any moment.
    Searching,
    /// It joined this game and plays it, or waits in its lobby; it asks for no other game.
    InGame { game: String, participants: u8 },
    /// It has played all its games (or stopped) and will join nothing more.
    Done,
}

/// The states of a group of bots run in one process, so their owner can tell when every bot
/// still playing waits in a lobby none of them can fill (see `demo`). A bot takes the lock to
/// become [`BotState::Searching`] before it asks for a game, so an owner holding the lock knows
/// that no lobby gains a player meanwhile.
#[derive(Debug)]
pub struct BotBoard {
    states: tokio::sync::Mutex<Vec<BotState>>,
}

impl BotBoard {
    /// A board of `bots` bots, all searching.
    pub fn new(bots: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(BotBoard {
            states: tokio::sync::Mutex::new(vec![BotState::Searching; bots]),
        })
    }

    /// The states, locked: no bot changes its state (or asks for a game) until the guard drops.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, Vec<BotState>> {
        self.states.lock().await
    }
}

/// One bot's place on a [`BotBoard`].
#[derive(Clone, Debug)]
pub struct BoardSeat {
    pub board: std::sync::Arc<BotBoard>,
    pub bot: usize,
}

impl BoardSeat {
    async fn set(&self, state: BotState) {
        if let Some(slot) = self.board.lock().await.get_mut(self.bot) {
            *slot = state;
        }
    }
}

async fn mark(options: &PlayerOptions, state: BotState) {
    if let Some(seat) = &options.board {
        seat.set(state).await;
    }
}

/// How a game ended for this bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Last one standing.
    Won,
    /// Alive when the turn cap ended the game.
    Survived,
    Eliminated,
    /// The lobby did not fill in time.
    TimedOut,
    /// The connection or the server failed during the game.
    Aborted(String),
}

/// One game as the bot saw it.
#[derive(Clone, Debug)]
pub struct GameReport {
    pub game_token: String,
    pub hero_id: u32,
    pub participants: Vec<String>,
    pub outcome: Outcome,
    /// 1 = best, among players alive at the end; None when eliminated or unknown.
    pub rank: Option<usize>,
    /// Attacks this bot made.
    pub attacks: u32,
    /// USER'S TURN pushes received.
    pub turns: u32,
}

/// Plays the configured number of games; Ok once done (or on shutdown).
pub async fn run(settings: &Settings, options: &PlayerOptions, shutdown: Shutdown) -> Result<()> {
    play(settings, options, shutdown).await.map(|_| ())
}

/// Like [`run`], returning what happened in each game (tests and benchmarks read it).
#[tracing::instrument(name = "player", skip_all, fields(user = tracing::field::Empty))]
pub async fn play(
    settings: &Settings,
    options: &PlayerOptions,
    shutdown: Shutdown,
) -> Result<Vec<GameReport>> {
    let name = options.user.clone().unwrap_or_else(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("player-{}", &id[..12])
    });
    tracing::Span::current().record("user", tracing::field::display(&name));
    let host = if settings.websocket_host.contains(':') {
        format!("[{}]", settings.websocket_host)
    } else {
        settings.websocket_host.clone()
    };
    let base = format!("ws://{host}:{}", settings.websocket_port);
    let mut reports = Vec::new();
    let mut session: Option<Session> = None;
    let mut unreachable_logged = false;
    while settings
        .client_games
        .is_none_or(|limit| (reports.len() as u64) < limit)
    {
        if shutdown.is_triggered() {
            break;
        }
        mark(options, BotState::Searching).await;
        let mut current = match session.take() {
            Some(s) => s,
            None => {
                let connected = tokio::select! {
                    c = Session::connect(&base, &name) => c,
                    _ = shutdown.recv() => break,
                };
                match connected {
                    Ok(s) => {
                        unreachable_logged = false;
                        tracing::debug!("{name} logged in at {base} as {}", s.user_token);
                        s
                    }
                    Err(e) => {
                        if !unreachable_logged {
                            tracing::warn!("{name}: server not reachable at {base} ({e:#}); retrying every {:?}", settings.client_sleep);
                            unreachable_logged = true;
                        }
                        if !pause(settings, &shutdown).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let n = options
            .participants
            .unwrap_or_else(|| rand::rng().random_range(2..=3));
        let played = tokio::select! {
            r = current.play_game(n, settings, options) => r,
            _ = shutdown.recv() => break,
        };
        match played {
            Ok(report) => {
                log_report(&name, &report);
                send_progress(options, &report);
                reports.push(report);
                session = Some(current);
            }
            Err(Failure::BeforeJoin(e)) => {
                tracing::warn!("{name}: could not join a game: {e:#}");
                if !pause(settings, &shutdown).await {
                    break;
                }
            }
            Err(Failure::InGame(mut report, e)) => {
                report.outcome = Outcome::Aborted(format!("{e:#}"));
                log_report(&name, &report);
                send_progress(options, &report);
                reports.push(report);
                if !pause(settings, &shutdown).await {
                    break;
                }
            }
        }
    }
    mark(options, BotState::Done).await;
    Ok(reports)
}

fn send_progress(options: &PlayerOptions, report: &GameReport) {
    if let Some(tx) = &options.progress {
        // A listener that went away only loses its progress display.
        let _ = tx.send(report.clone());
    }
}

fn log_report(name: &str, r: &GameReport) {
    let outcome = match &r.outcome {
        Outcome::Won => "won".to_string(),
        Outcome::Survived => "survived the turn cap".to_string(),
        Outcome::Eliminated => "eliminated".to_string(),
        Outcome::TimedOut => "lobby timed out".to_string(),
        Outcome::Aborted(why) => format!("aborted: {why}"),
    };
    let rank = r
        .rank
        .map(|k| format!(", rank {k}/{}", r.participants.len()))
        .unwrap_or_default();
    tracing::info!(
        "{name}: game {} hero {}: {outcome}{rank} ({} attacks)",
        r.game_token,
        r.hero_id,
        r.attacks
    );
}

/// Sleeps CLIENT_SLEEP; false when shutdown came first.
async fn pause(settings: &Settings, shutdown: &Shutdown) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(settings.client_sleep) => true,
        _ = shutdown.recv() => false,
    }
}
