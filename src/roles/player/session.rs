//! One logged-in bot: its session (a socket per route) and the steps of one game: find a game,
//! wait in the lobby, take turns, and read the final standing.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::Rng;
use serde_json::Value;

use super::socket::{receive, send, typed, RouteSocket};
use super::{mark, BotState, GameReport, Outcome, PlayerOptions};
use crate::config::Settings;
use crate::roles::server::protocol::{
    game_status, reason, ActionPayload, FindPayload, FindReply, GameUserPayload, HeroReply,
    LoginPayload, LoginReply, Request, Route, StartPush, ATTACK,
};

pub(super) enum Failure {
    /// No game was joined; nothing counts.
    BeforeJoin(anyhow::Error),
    /// The game was joined and then lost.
    InGame(GameReport, anyhow::Error),
}

/// A logged-in bot with one open socket per route.
pub(super) struct Session {
    pub(super) user_token: String,
    pub(super) find: RouteSocket,
    pub(super) lobby: RouteSocket,
    pub(super) hero: RouteSocket,
    pub(super) action: RouteSocket,
}

impl Session {
    pub(super) async fn connect(base: &str, name: &str) -> Result<Session> {
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

    pub(super) async fn play_game(
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

    pub(super) async fn lobby_loop(
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
    pub(super) async fn heroes(&mut self, g: &str, users: &[String]) -> Result<Vec<HeroReply>> {
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
    pub(super) async fn take_turn(&mut self, report: &GameReport) -> Result<bool> {
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
                    action: ATTACK.to_string(),
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

    pub(super) async fn final_standing(&mut self, report: &mut GameReport) -> Result<()> {
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
