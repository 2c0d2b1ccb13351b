//! Writing a claimed game: load it, turn it into rows, write both files (given up after
//! WRITE_TIMEOUT), keep the claim's lease alive meanwhile, and mark the game done.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;
use tracing::Instrument;

use super::claim::{self, Finish};
use super::handle::Failure;
use super::{etl, Outcome, Worker};

impl Worker {
    /// Holds the claim for the steps after [`claim::claim`]; `None` when another worker took the
    /// game over meanwhile.
    pub(super) async fn write(
        &self,
        conn: &mut Conn,
        game: &str,
        token: &str,
        previous_writer: Option<String>,
    ) -> Result<Option<Outcome>, Failure> {
        let started = Instant::now();
        // The previous writer's files are named by its worker id; its token is what the keys hold.
        let previous_writer = previous_writer.map(|t| claim::writer_id(&t).to_string());
        if let Some(previous) = &previous_writer {
            if self.pair_in_place(game, previous).await? {
                // A writer died between its renames and `finish`: its pair is the output.
                tracing::info!("game {game}: taking over the complete files of worker {previous}");
                return match claim::finish(conn, game, token, previous).await? {
                    Finish::Done(_) => {
                        self.clean(conn, game).await?;
                        Ok(Some(Outcome::AlreadyDone))
                    }
                    Finish::Lost { .. } => Ok(None),
                };
            }
        }
        let loaded = match etl::load_game(conn, game).await.map_err(Failure::from) {
            Ok(loaded) => loaded,
            Err(Failure::Other(e)) => {
                // Malformed game state will not get better: no retry here; the fanout's
                // delivery limit sends it to the dead letters with this reason.
                claim::release(conn, game, token).await?;
                let why = format!("game {game}: {e:#}");
                self.skip_game("malformed_game", &why);
                return Ok(Some(Outcome::Unwritable(why)));
            }
            Err(e) => return Err(e),
        };
        let Some(data) = loaded else {
            claim::release(conn, game, token).await?;
            let why = format!("game {game} does not exist or is not finished");
            self.skip_game("game_not_finished", &why);
            return Ok(Some(Outcome::Unwritable(why)));
        };
        if let Some(previous) = previous_writer {
            if !claim::start_writing(conn, game, token).await? {
                return Ok(None);
            }
            // We are the writer now: whatever the previous one left is not the output, and our
            // pair must not be written beside files we could not remove.
            tracing::info!("game {game}: removing the incomplete files of worker {previous}");
            if let Err(e) = self.output.remove_pair(game, &previous).await {
                // Their judgement goes back to whoever claims the game next.
                claim::hand_back(conn, game, token, &previous).await?;
                return Err(Failure::Other(e.context(format!(
                    "game {game}: cannot remove the incomplete files of worker {previous}, so \
                     its pair is not written"
                ))));
            }
        }
        self.write_files(game, token, &data).await?;
        match claim::finish(conn, game, token, &self.id).await? {
            Finish::Done(by) if by == self.id => {
                self.metrics
                    .etl_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.files_written.inc_by(2);
                self.metrics.games_written.inc();
                self.clean(conn, game).await?;
                Ok(Some(Outcome::Written))
            }
            Finish::Done(by) => {
                tracing::info!("game {game} was finished by {by} meanwhile; removing our files");
                self.remove_own_files(game).await;
                self.clean(conn, game).await?;
                Ok(Some(Outcome::AlreadyDone))
            }
            Finish::Lost { writer: None } => {
                // No lease, no writer, no done: Redis lost the game's claim keys while we wrote
                // (restarted without persistence, or failed over with lag). Its game keys went
                // with them, so nobody can write the game again: our pair is the only copy.
                tracing::warn!(
                    "game {game}: Redis no longer knows this game's claim (restarted or failed \
                     over?); keeping our files as its output"
                );
                Ok(None)
            }
            lost => {
                if lost.supersedes(&self.id) {
                    tracing::info!("game {game}: lease lost to another writer; removing our files");
                    self.remove_own_files(game).await;
                }
                Ok(None)
            }
        }
    }

    /// Renews the lease every third of its length until aborted.
    pub(super) fn keep_lease(&self, game: &str, token: &str) -> tokio::task::JoinHandle<()> {
        let (mut conn, game, token) = (self.conn.clone(), game.to_string(), token.to_string());
        let lease = self.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match claim::renew(&mut conn, &game, &token, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {} // Redis is down: keep trying, the lease may survive it.
                }
            }
        })
    }

    /// Whether `worker`'s pair of `game` is complete. A store that cannot answer (after the
    /// client's retries) fails this delivery: it comes back later.
    pub(super) async fn pair_in_place(&self, game: &str, worker: &str) -> Result<bool, Failure> {
        self.output
            .has_pair(game, worker)
            .await
            .map_err(Failure::Other)
    }

    /// Removes our own files of `game` that are not its output, final and temporary (a
    /// failure is only logged: `report` names what stays).
    pub(super) async fn remove_own_files(&self, game: &str) {
        self.output.remove_pair_or_warn(game, &self.id).await;
    }

    /// Writes the game's pair of files, giving up after WRITE_TIMEOUT. A write that overruns
    /// keeps its thread (it cannot be cancelled), and keeps the game's lease too: nobody else
    /// may claim the game, judge or remove files until the write has returned and its files
    /// have been judged under that same lease (see [`Self::settle_overrun`]).
    pub(super) async fn write_files(
        &self,
        game: &str,
        token: &str,
        data: &etl::GameData,
    ) -> Result<(), Failure> {
        let (meta, podium) = etl::rows(game, data);
        let (output, id, g) = (self.output.clone(), self.id.clone(), game.to_string());
        // Spawned, so a write past WRITE_TIMEOUT runs on and is settled when it returns.
        let mut write = tokio::spawn(async move { output.write_game(&id, &g, meta, podium).await });
        match tokio::time::timeout(self.write_timeout, &mut write).await {
            Ok(joined) => joined
                .map_err(|e| Failure::Other(anyhow::anyhow!("writing game {game}: {e}")))?
                .map_err(Failure::Other),
            Err(_) => {
                self.stuck_writes.fetch_add(1, Ordering::Relaxed);
                let renewer = self.keep_lease(game, token);
                let (stuck, mut conn) = (self.stuck_writes.clone(), self.conn.clone());
                let (output, id) = (self.output.clone(), self.id.clone());
                let (g, token) = (game.to_string(), token.to_string());
                tokio::spawn(
                    async move {
                        let written = matches!(write.await, Ok(Ok(())));
                        settle_overrun(&mut conn, &output, &g, &token, &id, written).await;
                        renewer.abort();
                        stuck.fetch_sub(1, Ordering::Relaxed);
                    }
                    .in_current_span(),
                );
                Err(Failure::Overran(anyhow::anyhow!(
                    "writing game {game} took longer than WRITE_TIMEOUT ({:?}); it goes on in \
                     the background, holding the game",
                    self.write_timeout
                )))
            }
        }
    }
}

/// Judges the files of a write that overran WRITE_TIMEOUT, once it has returned, while the
/// lease is still held for it: a complete pair becomes the game's output through the same
/// `finish` step as any write (so it is marked done only with both files present); anything
/// else is removed, then the lease is given back. A lease lost meanwhile is judged as in
/// [`Worker::write`]: another writer's game is not ours to keep; a game Redis forgot keeps
/// our files.
async fn settle_overrun(
    conn: &mut Conn,
    output: &crate::pipeline::sink::Output,
    game: &str,
    token: &str,
    id: &str,
    written: bool,
) {
    let finished = if written {
        claim::finish(conn, game, token, id).await
    } else {
        output.remove_pair_or_warn(game, id).await;
        claim::release(conn, game, token)
            .await
            .map(|()| Finish::Lost { writer: None })
    };
    match finished {
        Ok(finish) if finish.supersedes(id) => {
            tracing::warn!(
                "game {game}: another worker finished or took the game while our write overran \
                 ({finish:?}); removing our files"
            );
            output.remove_pair_or_warn(game, id).await;
        }
        Ok(Finish::Done(_)) => {
            tracing::info!(
                "game {game}: a write that overran WRITE_TIMEOUT returned and is the output"
            );
        }
        Ok(Finish::Lost { .. }) => {}
        Err(e) => {
            // Redis is unreachable: keep the files; whoever claims the game next judges them
            // by the writer key, as after a crash.
            tracing::warn!(
                "game {game}: cannot settle a write that overran WRITE_TIMEOUT ({}); its files stay for the next claimant",
                crate::pipeline::redis_conn::describe(&e)
            );
        }
    }
}
