//! Handing log entries to workers: each goes to one live worker with room (round-robin), as
//! that worker's pending entry (XCLAIM … JUSTID) and as a PUBLISH on its channel carrying the
//! entry id as `delivery_id` ([`with_delivery_id`]); what nobody can take is held, and what is
//! no record at all goes to the dead letters.

use std::collections::{BTreeMap, VecDeque};

use redis::RedisResult;

use super::router::Router;
use super::Entry;
use crate::pipeline::delivery::{self, MAX_UNACKED_PER_WORKER};
use crate::pipeline::keys;
use crate::pipeline::record::{self, RecordError, DELIVERY_ID_FIELD};

impl Router {
    /// Hands entries to workers: each goes to one live worker with room, as its pending entry
    /// and as a PUBLISH on its channel. Entries whose PUBLISH reached nobody go to the next
    /// worker; with none left they are held until one appears.
    pub(super) async fn route(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        let mut queue: VecDeque<Entry> = entries.into();
        while !queue.is_empty() {
            let mut batch: BTreeMap<String, Vec<(Entry, String)>> = BTreeMap::new();
            let mut invalid = Vec::new();
            while let Some(entry) = queue.pop_front() {
                let payload = match with_delivery_id(&entry.record, &entry.id) {
                    Ok(p) => p,
                    Err(e) => {
                        invalid.push((entry, e));
                        continue;
                    }
                };
                match self.pick(entry.avoid.as_deref()) {
                    Some(worker) => batch.entry(worker).or_default().push((entry, payload)),
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
            let mut pipe = redis::pipe();
            for (worker, items) in &batch {
                let ids: Vec<&String> = items.iter().map(|(e, _)| &e.id).collect();
                claim_cmd(&mut pipe, &self.stream, &self.group, worker, &ids).ignore();
                let channel = keys::worker_channel(&self.lobby, worker);
                for (_, payload) in items {
                    pipe.publish(&channel, payload);
                }
            }
            let receivers: Vec<u64> = pipe.query_async(&mut self.conn).await?;
            let local_now = crate::clock::now_ms() as i64;
            let mut answers = receivers.into_iter();
            for (worker, items) in batch {
                let mut gone = false;
                for (entry, _) in items {
                    if answers.next().unwrap_or(0) > 0 {
                        self.delivered(&entry, local_now);
                    } else {
                        gone = true;
                        queue.push_back(Entry {
                            avoid: None,
                            ..entry
                        });
                    }
                }
                if gone {
                    tracing::info!(
                        "worker {worker} no longer listens; routing its records elsewhere"
                    );
                    self.workers.retain(|w| *w != worker);
                    self.unacked.remove(&worker);
                }
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

    /// Round-robin over live workers with room, avoiding `avoid` when another can take it.
    pub(super) fn pick(&mut self, avoid: Option<&str>) -> Option<String> {
        let n = self.workers.len();
        let mut fallback = None;
        for step in 0..n {
            let i = (self.next + step) % n;
            let worker = &self.workers[i];
            if self.unacked(worker) >= MAX_UNACKED_PER_WORKER {
                continue;
            }
            if Some(worker.as_str()) == avoid && n > 1 {
                fallback.get_or_insert(i);
                continue;
            }
            return Some(self.take_slot(i));
        }
        fallback.map(|i| self.take_slot(i))
    }

    pub(super) fn take_slot(&mut self, i: usize) -> String {
        self.next = i + 1;
        let worker = self.workers[i].clone();
        *self.unacked.entry(worker.clone()).or_default() += 1;
        worker
    }

    /// Keeps entries no worker can take, claimed by this fanout so they do not count as
    /// abandoned; they are routed as soon as a worker is live.
    pub(super) async fn hold(&mut self, entries: Vec<Entry>) -> RedisResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        self.claim_for_self(&ids).await?;
        self.held.extend(entries);
        Ok(())
    }

    pub(super) async fn claim_for_self(&mut self, ids: &[String]) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        claim_cmd(&mut pipe, &self.stream, &self.group, &self.consumer, ids).ignore();
        pipe.query_async(&mut self.conn).await
    }

    /// An entry no worker could ever handle (not a valid record) goes straight to the dead
    /// letters.
    pub(super) async fn dead_letter_now(&mut self, entry: &Entry, reason: &str) -> RedisResult<()> {
        tracing::warn!("record {} is not routable: {reason}", entry.id);
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(keys::dead_stream(&self.lobby))
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
            .cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        self.metrics.records_dead_lettered.inc();
        Ok(())
    }
}

/// `XCLAIM <stream> <group> <consumer> 0 <ids…> JUSTID`: the entries become `consumer`'s
/// without counting as a new delivery.
pub(super) fn claim_cmd<'a, I: redis::ToRedisArgs>(
    pipe: &'a mut redis::Pipeline,
    stream: &str,
    group: &str,
    consumer: &str,
    ids: &[I],
) -> &'a mut redis::Pipeline {
    pipe.cmd("XCLAIM")
        .arg(stream)
        .arg(group)
        .arg(consumer)
        .arg(0)
        .arg(ids)
        .arg("JUSTID")
}

/// The record as routed: the same JSON object (decoded once if it came double-encoded) with the
/// delivery id as an extra field. Fails with the reason a worker would skip it for.
pub fn with_delivery_id(raw: &[u8], id: &str) -> Result<String, RecordError> {
    let parsed = record::parse(raw)?;
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
        return Ok(serde_json::Value::Object(map).to_string());
    }
    // A valid record is an object with at least log_message: `{` is followed by a field.
    let body = object
        .trim_start()
        .strip_prefix('{')
        .ok_or(RecordError::NotObject)?;
    let id = serde_json::to_string(id).map_err(|e| RecordError::NotJson(e.to_string()))?;
    Ok(format!("{{\"{DELIVERY_ID_FIELD}\":{id},{body}"))
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
