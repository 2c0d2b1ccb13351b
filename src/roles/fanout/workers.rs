//! What the router knows of the workers and the choices it makes from it: which workers are
//! live (in a stable order, for the rotation), what each holds unacknowledged, and which worker
//! each recent game's records went to; the worker for one entry ([`Workers::pick`]) and each
//! worker's share of a backlog ([`Workers::shares`]). No Redis here: the router feeds it what
//! Redis says.

use std::collections::HashMap;

use super::GAMES_REMEMBERED;
use crate::pipeline::delivery::MAX_UNACKED_PER_WORKER;

pub(super) struct Workers {
    /// Live workers, sorted.
    live: Vec<String>,
    /// Unacknowledged entries per worker (from XPENDING, plus what was routed since).
    unacked: HashMap<String, u64>,
    /// Where the rotation starts next.
    next: usize,
    /// The worker each recent game's records went to.
    games: HashMap<String, String>,
}

impl Workers {
    pub(super) fn new() -> Workers {
        Workers {
            live: Vec::new(),
            unacked: HashMap::new(),
            // Fanouts start their rotation at different workers, so they do not all send the
            // first record of a quiet spell to the same one.
            next: rand::random::<u32>() as usize,
            games: HashMap::new(),
        }
    }

    pub(super) fn live(&self) -> &[String] {
        &self.live
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Replaces the live workers; true when they changed.
    pub(super) fn set_live(&mut self, mut live: Vec<String>) -> bool {
        live.sort();
        let changed = live != self.live;
        self.live = live;
        changed
    }

    /// Takes the group's counts of unacknowledged entries per consumer as this router's.
    pub(super) fn set_unacked(&mut self, counts: impl IntoIterator<Item = (String, u64)>) {
        self.unacked = counts.into_iter().collect();
    }

    pub(super) fn unacked(&self, worker: &str) -> u64 {
        self.unacked.get(worker).copied().unwrap_or(0)
    }

    /// Room left across live workers before each reaches its limit of unacknowledged records.
    pub(super) fn room(&self) -> u64 {
        self.live
            .iter()
            .map(|w| MAX_UNACKED_PER_WORKER.saturating_sub(self.unacked(w)))
            .sum()
    }

    /// `worker` is full by the count of every fanout's deliveries.
    pub(super) fn mark_full(&mut self, worker: String) {
        self.unacked.insert(worker, MAX_UNACKED_PER_WORKER);
    }

    /// `worker` no longer listens: out of the rotation until its heartbeat says otherwise.
    pub(super) fn remove(&mut self, worker: &str) {
        self.live.retain(|w| w != worker);
        self.unacked.remove(worker);
    }

    /// The worker for an entry: the one its game's records went to while it has room (so one
    /// worker sees a whole game, and a game's work lands where its rotation put it); otherwise
    /// the least loaded live worker with room, ties broken by a rotation over games so that at a
    /// game's pace, when every worker is idle, games still spread. Avoids `avoid` when another
    /// can take it. Counts the entry against the worker.
    pub(super) fn pick(&mut self, avoid: Option<&str>, game: Option<&str>) -> Option<String> {
        if let Some(worker) = game.and_then(|g| self.games.get(g)) {
            if Some(worker.as_str()) != avoid
                && self.unacked(worker) < MAX_UNACKED_PER_WORKER
                && self.live.contains(worker)
            {
                let worker = worker.clone();
                *self.unacked.entry(worker.clone()).or_default() += 1;
                return Some(worker);
            }
        }
        // The least loaded worker with room, first in rotation order; `avoid` only when no
        // other has room.
        let n = self.live.len();
        let mut best: Option<(bool, u64, usize)> = None;
        for step in 0..n {
            let i = (self.next + step) % n;
            let worker = &self.live[i];
            let load = self.unacked(worker);
            if load >= MAX_UNACKED_PER_WORKER {
                continue;
            }
            let avoided = n > 1 && Some(worker.as_str()) == avoid;
            if best.is_none_or(|(b_avoided, b_load, _)| (avoided, load) < (b_avoided, b_load)) {
                best = Some((avoided, load, i));
            }
        }
        let (_, _, i) = best?;
        let worker = self.live[i].clone();
        *self.unacked.entry(worker.clone()).or_default() += 1;
        if let Some(g) = game {
            // The rotation moves once per game, not per record: a game's records come in a
            // fixed pattern (its host's among them), which a per-record rotation would align
            // with the workers, sending every host record to the same one.
            self.next = i + 1;
            self.remember(g, &worker);
        }
        Some(worker)
    }

    /// Notes that game `g`'s records go to `worker`.
    pub(super) fn remember(&mut self, g: &str, worker: &str) {
        if self.games.len() >= GAMES_REMEMBERED {
            self.games.clear();
        }
        self.games.insert(g.to_string(), worker.to_string());
    }

    /// Each worker's share of `count` entries of a backlog: an even split where room allows,
    /// none past its limit, and what a nearly full worker cannot take goes to the others
    /// (so shares are settled fullest first, ties in rotation order); workers without room
    /// get none. The rotation moves on by one.
    pub(super) fn shares(&mut self, count: u64) -> Vec<(String, u64)> {
        let n = self.live.len();
        let mut open: Vec<(u64, usize, &String)> = (0..n)
            .map(|step| &self.live[(self.next + step) % n])
            .enumerate()
            .map(|(order, w)| {
                (
                    MAX_UNACKED_PER_WORKER.saturating_sub(self.unacked(w)),
                    order,
                    w,
                )
            })
            .filter(|(room, _, _)| *room > 0)
            .collect();
        open.sort();
        let (mut wanted, mut left) = (count, open.len() as u64);
        let mut shares = Vec::new();
        for (room, _, worker) in open {
            let share = room.min(wanted.div_ceil(left));
            left -= 1;
            if share > 0 {
                wanted -= share;
                shares.push((worker.clone(), share));
            }
        }
        self.next = self.next.wrapping_add(1);
        shares
    }
}

/// Of `read` entries just read for a worker that the group now counts `held` entries at, how
/// many it keeps: the ones past its limit (another fanout routed to it meanwhile) go back.
pub(super) fn kept(read: usize, held: u64) -> usize {
    let over = held.saturating_sub(MAX_UNACKED_PER_WORKER);
    read.saturating_sub(usize::try_from(over).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(live: &[&str], unacked: &[(&str, u64)]) -> Workers {
        let mut w = Workers::new();
        w.next = 0;
        w.set_live(live.iter().map(|s| s.to_string()).collect());
        w.set_unacked(unacked.iter().map(|(k, n)| (k.to_string(), *n)));
        w
    }

    #[test]
    fn a_games_records_stay_with_its_worker_while_it_has_room() {
        let mut w = workers(&["a", "b"], &[]);
        let first = w.pick(None, Some("g1")).unwrap();
        assert_eq!(w.pick(None, Some("g1")).unwrap(), first);
        assert_ne!(
            w.pick(None, Some("g2")).unwrap(),
            first,
            "the next game moves on"
        );
        w.mark_full(first.clone());
        assert_ne!(w.pick(None, Some("g1")).unwrap(), first);
    }

    #[test]
    fn the_least_loaded_worker_is_picked_and_the_avoided_one_last() {
        let mut w = workers(&["a", "b", "c"], &[("a", 5), ("b", 1), ("c", 3)]);
        assert_eq!(w.pick(None, None).as_deref(), Some("b"));
        assert_eq!(w.pick(Some("b"), None).as_deref(), Some("c"));
        let mut full = workers(&["a"], &[("a", MAX_UNACKED_PER_WORKER)]);
        assert_eq!(full.pick(None, None), None);
        let mut alone = workers(&["a"], &[]);
        assert_eq!(alone.pick(Some("a"), None).as_deref(), Some("a"));
    }

    #[test]
    fn a_backlog_is_shared_within_every_limit() {
        let max = MAX_UNACKED_PER_WORKER;
        let mut w = workers(&["a", "b", "c"], &[("a", max - 10), ("c", max)]);
        let shares = w.shares(500);
        assert_eq!(shares, vec![("a".to_string(), 10), ("b".to_string(), max)]);
        let even = workers(&["a", "b"], &[]).shares(100);
        assert_eq!(
            even.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            vec![50, 50]
        );
        let few = w.shares(3);
        assert_eq!(few.iter().map(|(_, n)| n).sum::<u64>(), 3);
        assert!(workers(&["a"], &[("a", max)]).shares(10).is_empty());
    }

    #[test]
    fn entries_read_past_the_limit_go_back() {
        let max = MAX_UNACKED_PER_WORKER;
        assert_eq!(kept(10, max), 10);
        assert_eq!(kept(10, max + 4), 6);
        assert_eq!(kept(10, max + 40), 0);
        assert_eq!(kept(0, 0), 0);
    }
}
