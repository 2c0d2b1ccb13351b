//! A worker's own leftovers in its OUTPUT_DIR, removed when it starts.
//!
//! Workers need not share OUTPUT_DIR (one volume per host; an object store is always shared,
//! and there this sweep finds only what the claim would also have judged). Then a worker that
//! takes a game over from a dead writer W cannot see W's files, so W judges its own files by the
//! game's claim keys when it starts again under the same id: temporary files and half pairs go,
//! a pair that is the output stays, a duplicate of another worker's output goes, a complete pair
//! of an unfinished game finishes it. Before it removes or finishes anything the sweep takes the
//! game's lease and writer key over from any earlier process of its worker id, so a paused
//! process that comes back cannot finish a game with files judged here. The full rule and its
//! one limit (a worker down longer than REDIS_EXPIRY after a takeover) are in `docs/delivery.md`
//! ("Crash analysis: one folder per worker").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::pipeline::redis_conn::Conn;
use anyhow::Result;

use super::claim::{self, Finish, Leftovers};
use crate::pipeline::keys::Keys;
use crate::pipeline::shard::Layout;
use crate::pipeline::sink;

/// How long a start waits for another worker's lease on one of our games to end.
const LEASE_WAIT: Duration = Duration::from_secs(12);

/// What the start-up sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub temporary_removed: usize,
    pub games_removed: usize,
    pub games_finished: usize,
    pub games_kept: usize,
}

/// Removes `worker`'s leftovers under `output` (see the module docs).
///
/// A folder that cannot be listed only gets a warning (writing there fails too, and says so per
/// game; the worker still serves). An object store that cannot be listed, after the client's
/// retries, stops the start: it is a wrong bucket, wrong credentials or no network, and one
/// clear line says which.
pub async fn remove(
    conn: &mut Conn,
    layout: &Layout,
    output: &sink::Output,
    worker: &str,
) -> Result<Sweep> {
    let mut sweep = Sweep::default();
    // game → tables holding a final file of ours
    let mut games: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for table in [sink::META_TABLE, sink::PODIUM_TABLE] {
        let names = match output.list(table).await {
            Ok(names) => names,
            Err(e) if output.folder().is_some() => {
                tracing::warn!("worker {worker}: cannot look for leftovers: {e:#}");
                continue;
            }
            Err(e) => return Err(e.context(format!("worker {worker}: start-up sweep"))),
        };
        for name in names {
            if let Some(final_name) = sink::final_name_of_temporary(&name) {
                if sink::parse_file_name(final_name).is_some_and(|(_, w)| w == worker) {
                    output.remove_name(table, &name).await;
                    sweep.temporary_removed += 1;
                }
            } else if let Some((game, w)) = sink::parse_file_name(&name) {
                if w == worker {
                    games.entry(game.to_string()).or_default().push(table);
                }
            }
        }
    }
    for (game, tables) in games {
        let token = claim::lease_token(worker);
        let k = layout.keys_of(&game);
        match judge(conn, &k, worker, &game, &token, tables.len() == 2).await? {
            Verdict::Keep => sweep.games_kept += 1,
            Verdict::Finished => sweep.games_finished += 1,
            Verdict::Remove(why) => {
                tracing::info!("worker {worker}: removing its files of game {game}: {why}");
                output.remove_pair_or_warn(&game, worker).await;
                sweep.games_removed += 1;
            }
        }
        // Whatever the verdict, a lease the sweep took is given back; a game removed here is
        // written afresh by whoever claims it next.
        claim::release(conn, &k, &game, &token).await?;
    }
    if sweep != Sweep::default() {
        tracing::info!(
            "worker {worker}: start-up sweep of {}: {} temporary file(s) and {} game(s) removed, \
             {} game(s) finished with files already written, {} kept",
            output.dataset_location(),
            sweep.temporary_removed,
            sweep.games_removed,
            sweep.games_finished,
            sweep.games_kept
        );
    }
    Ok(sweep)
}

enum Verdict {
    Keep,
    Finished,
    Remove(&'static str),
}

/// Judges `worker`'s files of `game` (`complete`: both are there) by the game's claim keys.
/// Before anything is removed or finished, the lease and (when the last writer had our worker
/// id) the writer key become this sweep's ([`claim::claim_leftovers`]): a paused process of
/// our id that comes back cannot finish the game with files judged here.
async fn judge(
    conn: &mut Conn,
    k: &Keys,
    worker: &str,
    game: &str,
    token: &str,
    complete: bool,
) -> Result<Verdict> {
    let give_up = Instant::now() + LEASE_WAIT;
    loop {
        let verdict = match claim::claim_leftovers(conn, k, game, token, worker).await? {
            Leftovers::Done(by) if by == worker => Verdict::Keep,
            Leftovers::Done(_) => Verdict::Remove("another worker's files are the output"),
            Leftovers::UnknownGame => Verdict::Keep,
            // Another worker may be judging these very files: half a pair is of no use to it.
            Leftovers::Busy(_) if !complete => Verdict::Remove("half a pair"),
            Leftovers::Busy(holder) => {
                if Instant::now() >= give_up {
                    tracing::warn!(
                        "worker {worker}: game {game} is held by {holder}; keeping our files \
                         for now"
                    );
                    return Ok(Verdict::Keep);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Leftovers::OtherWriter(_) => Verdict::Remove("another worker took the game over"),
            Leftovers::Ours if !complete => Verdict::Remove("half a pair"),
            Leftovers::Ours => {
                // Finish with our pair, exactly as a takeover on a shared folder would.
                match claim::finish(conn, k, game, token, worker).await? {
                    Finish::Done(by) if by == worker => return Ok(Verdict::Finished),
                    // Someone moved first: judge again on the next pass.
                    Finish::Done(_) | Finish::Lost { .. } => continue,
                }
            }
        };
        return Ok(verdict);
    }
}
