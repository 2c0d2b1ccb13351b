//! `superhero player`: a bot that plays the game through the WebSocket API v1 (`docs/websocket-api.md`).
//!
//! It logs in under a name of its own, then plays CLIENT_GAMES games: find a game of
//! PARTICIPANTS players, wait in the lobby, and on each USER'S TURN look up the opponents'
//! heroes and attack a random living one. One socket per route is opened once and reused for
//! every request; one the server closed while it sat unused (IDLE_TIMEOUT, or to make room at
//! its connection cap) is reopened and the request sent again. After any other error the bot
//! drops its sockets, waits CLIENT_SLEEP and reconnects, so it can be started before the server.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::Settings;
use crate::roles::server::protocol::{
    game_status, reason, ActionPayload, FindPayload, FindReply, GameUserPayload, HeroReply,
    LoginPayload, LoginReply, Request, Route, StartPush,
};
use crate::shutdown::Shutdown;

type ClientSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

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

enum Failure {
    /// No game was joined; nothing counts.
    BeforeJoin(anyhow::Error),
    /// The game was joined and then lost.
    InGame(GameReport, anyhow::Error),
}

/// A logged-in bot with one open socket per route.
struct Session {
    user_token: String,
    find: RouteSocket,
    lobby: RouteSocket,
    hero: RouteSocket,
    action: RouteSocket,
}

async fn connect(url: &str) -> Result<ClientSocket> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(ws)
}

async fn send(ws: &mut ClientSocket, body: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(body)?;
    ws.send(Message::text(text))
        .await
        .context("the server closed the connection")
}

/// One route's socket, kept open between requests.
struct RouteSocket {
    url: String,
    ws: ClientSocket,
}

/// How a round of requests failed.
enum AskError {
    /// The socket was gone before the first reply: the server read none of the requests.
    NoReply(anyhow::Error),
    /// Some replies came, then the socket failed.
    Broken(anyhow::Error),
}

impl RouteSocket {
    async fn open(base: &str, route: Route) -> Result<Self> {
        let url = format!("{base}{}", route.path());
        let ws = connect(&url).await?;
        Ok(RouteSocket { url, ws })
    }

    /// Sends `requests` in one burst and reads one reply to each. The server closes a socket
    /// only while it waits for a request, so a socket gone before the first reply means none
    /// was read: they are sent once more, on a new socket.
    async fn ask(&mut self, requests: &[String]) -> Result<Vec<Value>> {
        match self.try_ask(requests).await {
            Ok(replies) => Ok(replies),
            Err(AskError::Broken(e)) => Err(e),
            Err(AskError::NoReply(e)) => {
                tracing::debug!("{}: closed before replying ({e:#}); reopening", self.url);
                self.ws = connect(&self.url).await?;
                match self.try_ask(requests).await {
                    Ok(replies) => Ok(replies),
                    Err(AskError::NoReply(e) | AskError::Broken(e)) => Err(e),
                }
            }
        }
    }

    /// [`RouteSocket::ask`] for one request.
    async fn ask_one(&mut self, request: &impl Serialize) -> Result<Value> {
        let text = serde_json::to_string(request)?;
        let mut replies = self.ask(&[text]).await?;
        replies.pop().context("no reply")
    }

    async fn try_ask(&mut self, requests: &[String]) -> Result<Vec<Value>, AskError> {
        for text in requests {
            self.ws
                .send(Message::text(text.as_str()))
                .await
                .context("the server closed the connection")
                .map_err(AskError::NoReply)?;
        }
        let mut replies = Vec::with_capacity(requests.len());
        for _ in requests {
            match receive(&mut self.ws).await {
                Ok(reply) => replies.push(reply),
                Err(e) if replies.is_empty() => return Err(AskError::NoReply(e)),
                Err(e) => return Err(AskError::Broken(e)),
            }
        }
        Ok(replies)
    }
}

/// The next JSON message on the socket.
async fn receive(ws: &mut ClientSocket) -> Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).context("server sent invalid JSON")
            }
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the connection"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("connection lost"),
        }
    }
}

/// Reads a reply of type `T`, or fails with the STATUS reason the server gave instead.
fn typed<T: DeserializeOwned>(reply: Value) -> Result<T> {
    match serde_json::from_value::<T>(reply.clone()) {
        Ok(t) => Ok(t),
        Err(_) => match reply.get("STATUS").and_then(Value::as_str) {
            Some(reason) => bail!("server refused: {reason}"),
            None => bail!("unexpected reply: {reply}"),
        },
    }
}

impl Session {
    async fn connect(base: &str, name: &str) -> Result<Session> {
        let (login, find, lobby, hero, action) = tokio::try_join!(
            RouteSocket::open(base, Route::Login),
            RouteSocket::open(base, Route::Find),
            RouteSocket::open(base, Route::Lobby),
            RouteSocket::open(base, Route::Hero),
            RouteSocket::open(base, Route::Action),
        )?;
        let mut login = login;
        let reply: LoginReply = typed(
            login
                .ask_one(&Request {
                    payload: LoginPayload {
                        user: name.to_string(),
                    },
                })
                .await?,
        )?;
        // The login socket is not needed again; close it politely.
        let _ = login.ws.close(None).await;
        Ok(Session {
            user_token: reply.payload.user_token,
            find,
            lobby,
            hero,
            action,
        })
    }

    async fn play_game(
        &mut self,
        n: u8,
        settings: &Settings,
        options: &PlayerOptions,
    ) -> Result<GameReport, Failure> {
        let joined = async {
            let request = Request {
                payload: FindPayload {
                    user_token: self.user_token.clone(),
                    participants: n,
                },
            };
            typed::<FindReply>(self.find.ask_one(&request).await?)
        }
        .await
        .map_err(Failure::BeforeJoin)?;
        mark(
            options,
            BotState::InGame {
                game: joined.payload.game_token.clone(),
                participants: n,
            },
        )
        .await;
        let mut report = GameReport {
            game_token: joined.payload.game_token,
            hero_id: joined.payload.hero_id,
            participants: Vec::new(),
            outcome: Outcome::Aborted(String::new()),
            rank: None,
            attacks: 0,
            turns: 0,
        };
        match self.lobby_loop(&mut report, n, settings).await {
            Ok(()) => Ok(report),
            Err(e) => Err(Failure::InGame(report, e)),
        }
    }

    async fn lobby_loop(
        &mut self,
        report: &mut GameReport,
        n: u8,
        settings: &Settings,
    ) -> Result<()> {
        let g = report.game_token.clone();
        let register = Request {
            payload: GameUserPayload {
                game_token: g.clone(),
                user_token: self.user_token.clone(),
            },
        };
        // A server that briefly lost Redis refuses the registration; the game is still ours.
        let mut retries_left = 5;
        // Long enough for a full lobby wait and every other player timing out once in a row.
        let idle_limit = settings.lobby_timeout
            + (settings.turn_timeout + settings.server_sleep) * u32::from(n.max(2))
            + Duration::from_secs(30);
        // The first push answers the registration (the socket may have idled out between games).
        let mut first = Some(
            tokio::time::timeout(idle_limit, self.lobby.ask_one(&register))
                .await
                .context("the lobby went silent")??,
        );
        loop {
            let push = match first.take() {
                Some(push) => push,
                None => tokio::time::timeout(idle_limit, receive(&mut self.lobby.ws))
                    .await
                    .context("the lobby went silent")??,
            };
            let game = push
                .get("STATUS")
                .and_then(|s| s.get("GAME"))
                .and_then(Value::as_str)
                .map(str::to_string);
            match game.as_deref() {
                Some(game_status::START) => {
                    let start: StartPush = typed(push)?;
                    report.participants = start.payload.participants;
                }
                Some(game_status::USERS_TURN) => {
                    report.turns += 1;
                    if self.take_turn(report).await? {
                        report.attacks += 1;
                    }
                }
                Some(game_status::COMPLETE) => {
                    self.final_standing(report).await?;
                    return Ok(());
                }
                Some(game_status::TIMED_OUT) => {
                    report.outcome = Outcome::TimedOut;
                    return Ok(());
                }
                _ => match push.get("STATUS").and_then(Value::as_str) {
                    Some(reason::SERVICE_UNAVAILABLE) if retries_left > 0 => {
                        retries_left -= 1;
                        tokio::time::sleep(settings.client_sleep).await;
                        send(&mut self.lobby.ws, &register).await?;
                    }
                    Some(reason) => bail!("lobby refused: {reason}"),
                    None => bail!("unexpected lobby message: {push}"),
                },
            }
        }
    }

    /// Heroes of `users` in the current game, asked over the hero socket in one burst.
    async fn heroes(&mut self, g: &str, users: &[String]) -> Result<Vec<HeroReply>> {
        let requests = users
            .iter()
            .map(|u| {
                serde_json::to_string(&Request {
                    payload: GameUserPayload {
                        game_token: g.to_string(),
                        user_token: u.clone(),
                    },
                })
            })
            .collect::<Result<Vec<String>, _>>()?;
        self.hero
            .ask(&requests)
            .await?
            .into_iter()
            .map(typed::<HeroReply>)
            .collect()
    }

    /// Attacks a random living opponent; false when there was none or the server refused.
    async fn take_turn(&mut self, report: &GameReport) -> Result<bool> {
        let g = report.game_token.clone();
        let opponents: Vec<String> = report
            .participants
            .iter()
            .filter(|u| **u != self.user_token)
            .cloned()
            .collect();
        let living: Vec<String> = self
            .heroes(&g, &opponents)
            .await?
            .into_iter()
            .filter(|h| h.payload.hero.health > 0)
            .map(|h| h.payload.user_token)
            .collect();
        if living.is_empty() {
            return Ok(false);
        }
        let enemy = living[rand::rng().random_range(0..living.len())].clone();
        let reply = self
            .action
            .ask_one(&Request {
                payload: ActionPayload {
                    game_token: g.clone(),
                    user_token: self.user_token.clone(),
                    enemy_token: enemy,
                    action: "ATTACK".to_string(),
                },
            })
            .await?;
        if let Some(reason) = reply.get("STATUS").and_then(Value::as_str) {
            // Typically NOT YOUR TURN after this bot was too slow and timed out.
            tracing::debug!("game {g}: attack refused: {reason}");
            return Ok(false);
        }
        Ok(true)
    }

    async fn final_standing(&mut self, report: &mut GameReport) -> Result<()> {
        let g = report.game_token.clone();
        let everyone = report.participants.clone();
        let heroes = self.heroes(&g, &everyone).await?;
        let health_of = |u: &str| {
            heroes
                .iter()
                .find(|h| h.payload.user_token == u)
                .map(|h| h.payload.hero.health)
                .unwrap_or(0)
        };
        let mine = health_of(&self.user_token);
        if mine == 0 {
            report.outcome = Outcome::Eliminated;
            return Ok(());
        }
        let others: Vec<u64> = everyone
            .iter()
            .filter(|u| **u != self.user_token)
            .map(|u| health_of(u))
            .collect();
        report.rank = Some(1 + others.iter().filter(|h| **h > mine).count());
        report.outcome = if others.iter().all(|h| *h == 0) {
            Outcome::Won
        } else {
            Outcome::Survived
        };
        Ok(())
    }
}
