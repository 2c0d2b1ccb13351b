//! Writing a claimed game's files: both files of a pair (given up after WRITE_TIMEOUT), the
//! claim's lease kept alive while a write overruns, and the files of a write that overran
//! judged once it returns. [`super::handle`] decides when to write and what the outcome is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;
use tracing::Instrument;

use super::claim::{self, Finish};
use super::etl;
use super::handle::Failure;
use crate::pipeline::keys::Keys;
use crate::pipeline::sink;

/// The file side of a worker: its output, how long a write may take, and the writes stuck past
/// that.
pub(super) struct Writer {
    id: String,
    output: sink::Output,
    write_timeout: Duration,
    /// How long a claim lasts without renewal.
    lease: Duration,
    /// Writes that ran past WRITE_TIMEOUT and have not returned yet.
    stuck: Arc<AtomicUsize>,
    conn: Conn,
}

impl Writer {
    pub(super) fn new(
        id: &str,
        output: sink::Output,
        write_timeout: Duration,
        lease: Duration,
        conn: Conn,
    ) -> Writer {
        Writer {
            id: id.to_string(),
            output,
            write_timeout,
            lease,
            stuck: Arc::new(AtomicUsize::new(0)),
            conn,
        }
    }

    /// Whether a write that overran WRITE_TIMEOUT has not returned yet: while one is stuck the
    /// worker stops beating, so the fanout gives it nothing new.
    pub(super) fn is_stuck(&self) -> bool {
        self.stuck.load(Ordering::Relaxed) > 0
    }

    /// Removes `worker`'s files of `game`, final and temporary.
    pub(super) async fn remove_pair(&self, game: &str, worker: &str) -> Result<()> {
        self.output.remove_pair(game, worker).await
    }

    /// Renews the lease every third of its length until aborted.
    pub(super) fn keep_lease(
        &self,
        k: &Keys,
        game: &str,
        token: &str,
    ) -> tokio::task::JoinHandle<()> {
        let (mut conn, game, token) = (self.conn.clone(), game.to_string(), token.to_string());
        let k = k.clone();
        let lease = self.lease;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match claim::renew(&mut conn, &k, &game, &token, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(_) => {} // Redis is down: keep trying, the lease may survive it.
                }
            }
        })
    }

    /// Whether `worker`'s pair of `game` is complete. A store that cannot answer (after the
    /// client's retries) fails this delivery: it comes back later.
    pub(super) async fn has_pair(&self, game: &str, worker: &str) -> Result<bool, Failure> {
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
        k: &Keys,
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
                self.stuck.fetch_add(1, Ordering::Relaxed);
                let renewer = self.keep_lease(k, game, token);
                let (stuck, mut conn) = (self.stuck.clone(), self.conn.clone());
                let (output, id) = (self.output.clone(), self.id.clone());
                let (g, token, k) = (game.to_string(), token.to_string(), k.clone());
                tokio::spawn(
                    async move {
                        let written = matches!(write.await, Ok(Ok(())));
                        settle_overrun(&mut conn, &k, &output, &g, &token, &id, written).await;
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
/// [`super::Worker::write`]: another writer's game is not ours to keep; a game Redis forgot keeps
/// our files.
async fn settle_overrun(
    conn: &mut Conn,
    k: &Keys,
    output: &crate::pipeline::sink::Output,
    game: &str,
    token: &str,
    id: &str,
    written: bool,
) {
    let finished = if written {
        claim::finish(conn, k, game, token, id).await
    } else {
        output.remove_pair_or_warn(game, id).await;
        claim::release(conn, k, game, token)
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
