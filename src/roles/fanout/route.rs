//! Handing log entries to workers: each goes to one live worker with room (the worker its
//! game's records went to, else the least loaded, ties broken by rotation), as that worker's
//! pending entry (XCLAIM … JUSTID) and as a PUBLISH on its channel carrying the entry id as
//! `delivery_id` ([`with_delivery_id`]); what nobody can take is held, and what is no record at
//! all goes to the dead letters.

use std::collections::{BTreeSet, HashSet, VecDeque};

use redis::RedisResult;

use super::router::Router;
use super::{Entry, GAMES_REMEMBERED, KEEP_OWN, ROUTE};
use crate::pipeline::delivery::{self, MAX_UNACKED_PER_WORKER};
use crate::pipeline::keys;
use crate::pipeline::record::{self, Event, RecordError, DELIVERY_ID_FIELD};

impl Router {
    /// Hands entries to workers: each goes to one live worker with room, as its pending entry
    /// and as a PUBLISH on its channel, in one script that also checks the entry is still this
    /// fanout's and the worker below its limit (see `route.lua`). Entries whose PUBLISH
    /// reached nobody go to the next worker; with none left they are held until one appears.
    pub(super) async fn route(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        let mut queue: VecDeque<Entry> = entries.into();
        while !queue.is_empty() {
            let mut batch: Vec<(Entry, String, String)> = Vec::new();
            let mut invalid = Vec::new();
            while let Some(entry) = queue.pop_front() {
                let (payload, game) = match routed(&entry.record, &entry.id) {
                    Ok(p) => p,
                    Err(e) => {
                        invalid.push((entry, e));
                        continue;
                    }
                };
                match self.pick(entry.avoid.as_deref(), game.as_deref()) {
                    Some(worker) => batch.push((entry, worker, payload)),
                    None => {
                        queue.push_front(entry);
                        break;
                    }
                }
            }
            for (entry, reason) in invalid {
                self.dead_letter_now(&entry, &reason.to_string()).await?;
            }
            if batch.is_empty() {
                // Nobody can take these now.
                let rest: Vec<Entry> = queue.drain(..).collect();
                return self.hold(rest).await;
            }
            let mut invocation = ROUTE.key(&self.stream);
            invocation
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(MAX_UNACKED_PER_WORKER)
                .arg(keys::worker_channel(&self.lobby, ""));
            for (entry, worker, payload) in &batch {
                invocation.arg(&entry.id).arg(worker).arg(payload);
            }
            let answers: Vec<i64> = invocation.invoke_async(&mut self.conn).await?;
            let local_now = crate::clock::now_ms() as i64;
            let mut gone = BTreeSet::new();
            for ((entry, worker, _), answer) in batch.into_iter().zip(answers) {
                match answer {
                    1 => self.delivered(&entry, local_now),
                    -1 => {
                        // Re-claimed by another fanout while this one was paused: it routes it.
                        self.metrics.records_left_to_another_fanout.inc();
                        tracing::debug!("record {} was taken by another fanout", entry.id);
                    }
                    -2 => {
                        // Full by the count of every fanout's deliveries: none more this round.
                        self.unacked.insert(worker, MAX_UNACKED_PER_WORKER);
                        queue.push_back(entry);
                    }
                    _ => {
                        gone.insert(worker);
                        queue.push_back(Entry {
                            avoid: None,
                            ..entry
                        });
                    }
                }
            }
            for worker in gone {
                tracing::info!("worker {worker} no longer listens; routing its records elsewhere");
                self.workers.retain(|w| *w != worker);
                self.unacked.remove(&worker);
            }
        }
        Ok(())
    }

    pub(super) fn delivered(&mut self, entry: &Entry, local_now_ms: i64) {
        if entry.rerouted {
            self.metrics.records_rerouted.inc();
        } else {
            self.metrics.records_routed.inc();
        }
        if let Some(appended) = delivery::entry_ms(&entry.id) {
            let age_ms = local_now_ms + self.redis_offset_ms - appended as i64;
            self.metrics
                .routing_latency
                .observe(age_ms.max(0) as f64 / 1000.0);
        }
    }

    /// The worker for an entry: the one its game's records went to while it has room (so one
    /// worker sees a whole game, and a game's work lands where its rotation put it); otherwise
    /// the least loaded live worker with room, ties broken by a rotation over games so that at a
    /// game's pace, when every worker is idle, games still spread. Avoids `avoid` when another
    /// can take it.
    pub(super) fn pick(&mut self, avoid: Option<&str>, game: Option<&str>) -> Option<String> {
        let has_room = |r: &Self, w: &str| r.unacked(w) < MAX_UNACKED_PER_WORKER;
        if let Some(worker) = game.and_then(|g| self.games.get(g)) {
            if Some(worker.as_str()) != avoid
                && has_room(self, worker)
                && self.workers.contains(worker)
            {
                let worker = worker.clone();
                *self.unacked.entry(worker.clone()).or_default() += 1;
                return Some(worker);
            }
        }
        let n = self.workers.len();
        let open: Vec<usize> = (0..n)
            .map(|step| (self.next + step) % n)
            .filter(|&i| has_room(self, &self.workers[i]))
            .collect();
        let preferred: Vec<usize> = open
            .iter()
            .copied()
            .filter(|&i| n == 1 || Some(self.workers[i].as_str()) != avoid)
            .collect();
        let candidates = if preferred.is_empty() {
            open
        } else {
            preferred
        };
        let i = candidates
            .into_iter()
            .min_by_key(|&i| self.unacked(&self.workers[i]))?;
        let worker = self.workers[i].clone();
        *self.unacked.entry(worker.clone()).or_default() += 1;
        if let Some(g) = game {
            // The rotation moves once per game, not per record: a game's records come in a
            // fixed pattern (its host's among them), which a per-record rotation would align
            // with the workers, sending every host record to the same one.
            self.next = i + 1;
            if self.games.len() >= GAMES_REMEMBERED {
                self.games.clear();
            }
            self.games.insert(g.to_string(), worker.clone());
        }
        Some(worker)
    }

    /// Keeps entries no worker can take, claimed by this fanout so they do not count as
    /// abandoned; they are routed as soon as a worker is live.
    pub(super) async fn hold(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.held.extend(entries);
        self.keep_held().await
    }

    /// Resets the idle time of the held entries still this fanout's; drops the others, which
    /// another fanout re-claimed while this one was paused.
    pub(super) async fn keep_held(&mut self) -> RedisResult<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut invocation = KEEP_OWN.key(&self.stream);
        invocation.arg(&self.group).arg(&self.consumer);
        for entry in &self.held {
            invocation.arg(&entry.id);
        }
        let mine: HashSet<String> = invocation.invoke_async(&mut self.conn).await?;
        let before = self.held.len();
        self.held.retain(|e| mine.contains(&e.id));
        let taken = before - self.held.len();
        if taken > 0 {
            self.metrics
                .records_left_to_another_fanout
                .inc_by(taken as u64);
            tracing::info!("{taken} held record(s) were taken by another fanout");
        }
        Ok(())
    }

    /// An entry no worker could ever handle (not a valid record) goes straight to the dead
    /// letters.
    pub(super) async fn dead_letter_now(&mut self, entry: &Entry, reason: &str) -> RedisResult<()> {
        tracing::warn!("record {} is not routable: {reason}", entry.id);
        let dead = keys::dead_stream(&self.lobby);
        let (before, after): (u64, u64) = redis::pipe()
            .atomic()
            .cmd("XLEN")
            .arg(&dead)
            .cmd("XADD")
            .arg(&dead)
            .arg("MAXLEN")
            .arg(self.dead_letters_max)
            .arg("*")
            .arg("entry")
            .arg(&entry.id)
            .arg("record")
            .arg(&entry.record)
            .arg("reason")
            .arg(format!("not a valid record: {reason}"))
            .arg("workers")
            .arg("")
            .arg("deliveries")
            .arg(0)
            .ignore()
            .cmd("XLEN")
            .arg(&dead)
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        self.metrics.records_dead_lettered.inc();
        self.metrics
            .dead_letters_dropped
            .inc_by((before + 1).saturating_sub(after));
        Ok(())
    }
}

/// The record as routed: the same JSON object (decoded once if it came double-encoded) with the
/// delivery id as an extra field. Fails with the reason a worker would skip it for.
pub fn with_delivery_id(raw: &[u8], id: &str) -> Result<String, RecordError> {
    routed(raw, id).map(|(payload, _)| payload)
}

/// [`with_delivery_id`], and the game the record is about, if it names one.
fn routed(raw: &[u8], id: &str) -> Result<(String, Option<String>), RecordError> {
    let parsed = record::parse(raw)?;
    let game = match parsed.event {
        Event::CleaningGameRecords { game_token, .. } | Event::GameTimedOut { game_token } => {
            Some(game_token.to_string())
        }
        Event::Other => None,
    };
    let text =
        std::str::from_utf8(raw).map_err(|_| RecordError::NotJson("invalid UTF-8".into()))?;
    let trimmed = text.trim();
    let object: std::borrow::Cow<str> = if trimmed.starts_with('"') {
        serde_json::from_str::<String>(trimmed)
            .map_err(|e| RecordError::NotJson(e.to_string()))?
            .into()
    } else {
        trimmed.into()
    };
    if parsed.delivery_id.is_some() {
        // Already carries an id (another fanout's, say): replace it rather than duplicate the key.
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&object).map_err(|e| RecordError::NotJson(e.to_string()))?;
        map.insert(DELIVERY_ID_FIELD.into(), id.into());
        return Ok((serde_json::Value::Object(map).to_string(), game));
    }
    // A valid record is an object with at least log_message: `{` is followed by a field.
    let body = object
        .trim_start()
        .strip_prefix('{')
        .ok_or(RecordError::NotObject)?;
    let id = serde_json::to_string(id).map_err(|e| RecordError::NotJson(e.to_string()))?;
    Ok((format!("{{\"{DELIVERY_ID_FIELD}\":{id},{body}"), game))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = r#"{"log_message":"Cleaning Game Records","task":{"game_token":"0b8f3a52-8a4b-4c55-9d3e-0123456789ab","user_token":"5d9c1e7a-2f4b-4a8e-b1c2-abcdefabcdef"}}"#;

    #[test]
    fn delivery_id_is_added_to_the_object() {
        let routed = with_delivery_id(REC.as_bytes(), "1700000000000-0").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "1700000000000-0");
        assert_eq!(value["log_message"], "Cleaning Game Records");
    }

    #[test]
    fn double_encoded_records_are_routed_as_objects() {
        let double = serde_json::to_string(REC).unwrap();
        let routed = with_delivery_id(double.as_bytes(), "5-0").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "5-0");
        assert_eq!(
            value["task"]["game_token"],
            "0b8f3a52-8a4b-4c55-9d3e-0123456789ab"
        );
    }

    #[test]
    fn an_existing_delivery_id_is_replaced() {
        let with_id = REC.replacen('{', r#"{"delivery_id":"old","#, 1);
        let routed = with_delivery_id(with_id.as_bytes(), "9-1").unwrap();
        let value: serde_json::Value = serde_json::from_str(&routed).unwrap();
        assert_eq!(value["delivery_id"], "9-1");
        assert_eq!(routed.matches("delivery_id").count(), 1);
    }

    #[test]
    fn garbage_is_not_routed() {
        assert!(with_delivery_id(b"not json", "1-0").is_err());
        assert!(with_delivery_id(b"[1,2]", "1-0").is_err());
    }
}
