//! Lifecycle records (`docs/records.md`): what the server publishes on WORKER_CHANNEL and the pipeline
//! consumes.
//!
//! [`LifecycleRecord`] is the shape the server writes (its scripts build the same object with
//! `cjson.encode`, `emit` in `roles/server/prelude.lua`), and [`AttackRecord`] the entry of a
//! game's log the attack script writes (`attack_record` there). [`parse`] is the consumer side: it takes
//! whatever bytes arrived on a channel, accepts the record as a JSON object or as a JSON string
//! holding that object (the original Python publisher double-encoded), and returns a typed
//! [`Record`] or a [`RecordError`] whose `Display` is the reason a consumer logs before skipping.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `log_message` of the record published when a game starts (task: the START message).
pub const STARTING_MATCH: &str = "Starting Match";
/// `log_message` of the record published when a lobby did not fill in time.
pub const GAME_TIMED_OUT: &str = "Game Timed Out";
/// `log_message` of the per-participant records published once a game is over.
pub const CLEANING_GAME_RECORDS: &str = "Cleaning Game Records";

/// Field the fanout adds to every record it routes; the worker acknowledges with it.
pub const DELIVERY_ID_FIELD: &str = "delivery_id";

/// Largest record a consumer accepts; checked before any parsing so a huge message costs nothing.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One lifecycle record, published as a single JSON object.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct LifecycleRecord {
    pub level: String,
    pub timestamp: String,
    pub name: String,
    pub log_message: String,
    pub task: Value,
}

impl LifecycleRecord {
    /// An INFO record stamped now, named after the channel it goes to.
    pub fn info(name: &str, log_message: &str, task: Value) -> Self {
        LifecycleRecord {
            level: "INFO".to_string(),
            timestamp: crate::clock::record_timestamp(),
            name: name.to_string(),
            log_message: log_message.to_string(),
            task,
        }
    }
}

/// An attack record (`docs/websocket-api.md`): one entry of `games:<g>:logs`, and the reply
/// to the attacker (with the enemy named by the alias the attacker knows it by). Written by the
/// attack script (`attack_record` in `roles/server/prelude.lua`, `cjson.encode` of the same
/// object) and by the synthetic generator; read by the server, the bot, the worker's ETL and
/// tests. Borrows its text where it can: the ETL reads ~30 of them per game. The fields the ETL
/// does not need may be absent, as a reader of other writers' logs expects.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AttackRecord<'a> {
    #[serde(borrow, default)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow)]
    pub payload: AttackPayload<'a>,
    #[serde(borrow)]
    pub status: AttackStatus<'a>,
}

/// Who attacked in which game.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AttackPayload<'a> {
    #[serde(borrow, default)]
    pub game_token: Cow<'a, str>,
    #[serde(borrow)]
    pub user_token: Cow<'a, str>,
}

/// `ACTION` is always `ATTACK`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AttackStatus<'a> {
    #[serde(borrow, default)]
    pub action: Cow<'a, str>,
    #[serde(borrow)]
    pub details: AttackDetails<'a>,
}

/// What the attack did to the enemy.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct AttackDetails<'a> {
    #[serde(borrow)]
    pub enemy_token: Cow<'a, str>,
    pub enemy_damage: u64,
    #[serde(default)]
    pub enemy_health_prior: u64,
    pub enemy_health_post: u64,
}

impl<'a> AttackRecord<'a> {
    /// `attacker` hit `enemy` in `game` for `damage`, taking its health from `prior` to `post`.
    pub fn new(
        timestamp: &'a str,
        game: &'a str,
        attacker: &'a str,
        enemy: &'a str,
        damage: u64,
        prior: u64,
        post: u64,
    ) -> Self {
        AttackRecord {
            timestamp: timestamp.into(),
            payload: AttackPayload {
                game_token: game.into(),
                user_token: attacker.into(),
            },
            status: AttackStatus {
                action: "ATTACK".into(),
                details: AttackDetails {
                    enemy_token: enemy.into(),
                    enemy_damage: damage,
                    enemy_health_prior: prior,
                    enemy_health_post: post,
                },
            },
        }
    }
}

/// A record as a consumer sees it after [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub log_message: String,
    /// What the record asks of a worker.
    pub event: Event,
    /// Added by the fanout; absent on records published straight to a worker channel.
    pub delivery_id: Option<String>,
    /// Added by our server to what it PUBLISHes: the record's entry in the log stream.
    pub entry_id: Option<String>,
}

/// The part of a record the pipeline acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `Cleaning Game Records` of one participant; ETL runs when `user_token` is the host.
    CleaningGameRecords { game_token: Uuid, user_token: Uuid },
    /// `Game Timed Out`: nothing to write; the clean routine expires the lobby's keys.
    GameTimedOut { game_token: Uuid },
    /// Any other lifecycle record: nothing to do beyond acknowledging it.
    Other,
}

/// Why a record was skipped. `Display` is the reason that gets logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record too large ({0} bytes, limit {MAX_RECORD_BYTES})")]
    TooLarge(usize),
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("malformed record ({0})")]
    Malformed(String),
    #[error("missing field {0}")]
    MissingField(&'static str),
    #[error("{field} is not a UUID: {value:?}")]
    NotUuid { field: &'static str, value: String },
}

impl RecordError {
    /// A short fixed label, for metrics and for rate-limiting log lines per reason.
    pub fn label(&self) -> &'static str {
        match self {
            RecordError::TooLarge(_) => "too_large",
            RecordError::NotJson(_) => "not_json",
            RecordError::NotObject => "not_object",
            RecordError::Malformed(_) => "malformed",
            RecordError::MissingField(_) => "missing_field",
            RecordError::NotUuid { .. } => "not_uuid",
        }
    }
}

/// The wire shape, every field optional so a missing one gets its own reason.
#[derive(Deserialize)]
struct WireRecord {
    log_message: Option<String>,
    task: Option<WireTask>,
    delivery_id: Option<String>,
    entry_id: Option<String>,
}

/// A task is an object; its fields are only read for `Cleaning Game Records`.
#[derive(Deserialize)]
struct WireTask {
    game_token: Option<Value>,
    user_token: Option<Value>,
}

/// Parses one record as it arrived on a channel.
pub fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(bytes.len()));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| RecordError::NotJson("invalid UTF-8".into()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('"') {
        // Double-encoded: a JSON string whose content is the record. One level only.
        let inner: String = serde_json::from_str(trimmed).map_err(|e| not_json(&e))?;
        if !inner.trim_start().starts_with('{') {
            return Err(RecordError::NotObject);
        }
        return parse_object(&inner);
    }
    if !trimmed.starts_with('{') {
        // Valid JSON of another kind, or not JSON at all: say which.
        return Err(
            match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => RecordError::NotObject,
                Err(e) => not_json(&e),
            },
        );
    }
    parse_object(trimmed)
}

fn parse_object(text: &str) -> Result<Record, RecordError> {
    let wire: WireRecord = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            RecordError::Malformed(first_line(&e))
        } else {
            not_json(&e)
        }
    })?;
    let log_message = wire
        .log_message
        .ok_or(RecordError::MissingField("log_message"))?;
    let event = if log_message == CLEANING_GAME_RECORDS {
        let task = wire.task.ok_or(RecordError::MissingField("task"))?;
        Event::CleaningGameRecords {
            game_token: token(task.game_token, "task.game_token")?,
            user_token: token(task.user_token, "task.user_token")?,
        }
    } else if log_message == GAME_TIMED_OUT {
        // A malformed one needs no work either: the lobby is over whatever the record says.
        match wire.task.map(|t| token(t.game_token, "task.game_token")) {
            Some(Ok(game_token)) => Event::GameTimedOut { game_token },
            _ => Event::Other,
        }
    } else {
        Event::Other
    };
    Ok(Record {
        log_message,
        event,
        delivery_id: wire.delivery_id,
        entry_id: wire.entry_id,
    })
}

/// A token must be a lowercase-hyphenated UUID string: it ends up in file names and key names.
fn token(value: Option<Value>, field: &'static str) -> Result<Uuid, RecordError> {
    let value = value.ok_or(RecordError::MissingField(field))?;
    let text = match value {
        Value::String(s) => s,
        other => {
            return Err(RecordError::NotUuid {
                field,
                value: clip(&other.to_string()),
            })
        }
    };
    match Uuid::try_parse(&text) {
        Ok(uuid) if uuid.hyphenated().to_string() == text => Ok(uuid),
        _ => Err(RecordError::NotUuid {
            field,
            value: clip(&text),
        }),
    }
}

fn not_json(e: &serde_json::Error) -> RecordError {
    RecordError::NotJson(first_line(e))
}

fn first_line(e: &serde_json::Error) -> String {
    clip(e.to_string().lines().next().unwrap_or("unknown error"))
}

/// Keeps logged values short: a hostile record must not flood the log.
fn clip(text: &str) -> String {
    const MAX: usize = 80;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Logs skipped records at most once per reason per second, with how many were not logged.
#[derive(Default)]
pub struct SkipLog {
    last: std::collections::HashMap<&'static str, (std::time::Instant, u64)>,
}

impl SkipLog {
    pub fn skip(&mut self, reason: &RecordError) {
        self.skip_with(reason.label(), &reason.to_string());
    }

    /// Logs `message` under `label` unless one was logged in the last second.
    pub fn skip_with(&mut self, label: &'static str, message: &str) {
        let now = std::time::Instant::now();
        match self.last.get_mut(label) {
            Some((at, suppressed))
                if now.duration_since(*at) < std::time::Duration::from_secs(1) =>
            {
                *suppressed += 1;
            }
            Some((at, suppressed)) => {
                let more = std::mem::take(suppressed);
                *at = now;
                if more > 0 {
                    tracing::warn!("skipped record: {message} ({more} more like it not logged)");
                } else {
                    tracing::warn!("skipped record: {message}");
                }
            }
            None => {
                self.last.insert(label, (now, 0));
                tracing::warn!("skipped record: {message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const G: &str = "0b8f3a52-8a4b-4c55-9d3e-0123456789ab";
    const U: &str = "5d9c1e7a-2f4b-4a8e-b1c2-abcdefabcdef";

    fn cleaning(game: &str, user: &str) -> String {
        serde_json::json!({
            "level": "INFO", "timestamp": "2026-11-26T16:14:48.123456", "name": "lobby",
            "log_message": CLEANING_GAME_RECORDS,
            "task": {"game_token": game, "user_token": user},
        })
        .to_string()
    }

    #[test]
    fn accepts_a_plain_object() {
        let record = parse(cleaning(G, U).as_bytes()).unwrap();
        assert_eq!(record.log_message, CLEANING_GAME_RECORDS);
        assert_eq!(
            record.event,
            Event::CleaningGameRecords {
                game_token: Uuid::parse_str(G).unwrap(),
                user_token: Uuid::parse_str(U).unwrap(),
            }
        );
        assert_eq!(record.delivery_id, None);
    }

    #[test]
    fn accepts_a_double_encoded_object() {
        let twice = serde_json::to_string(&cleaning(G, U)).unwrap();
        assert_eq!(
            parse(twice.as_bytes()).unwrap(),
            parse(cleaning(G, U).as_bytes()).unwrap()
        );
    }

    #[test]
    fn reads_the_delivery_id() {
        let text = format!("{{\"delivery_id\":\"42\",{}", &cleaning(G, U)[1..]);
        assert_eq!(
            parse(text.as_bytes()).unwrap().delivery_id.as_deref(),
            Some("42")
        );
    }

    #[test]
    fn other_records_need_no_task() {
        let text = r#"{"log_message": "Starting Match", "task": {"PAYLOAD": {}}}"#;
        assert_eq!(parse(text.as_bytes()).unwrap().event, Event::Other);
    }

    #[test]
    fn reasons() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not JSON"),
            (vec![0xff, 0xfe], "not JSON (invalid UTF-8)"),
            (b"[1,2]".to_vec(), "not a JSON object"),
            (b"\"just a string\"".to_vec(), "not a JSON object"),
            (b"{}".to_vec(), "missing field log_message"),
            (br#"{"log_message": 5}"#.to_vec(), "malformed record"),
            (
                br#"{"log_message": "Cleaning Game Records"}"#.to_vec(),
                "missing field task",
            ),
            (
                cleaning("../../etc", U).into_bytes(),
                "task.game_token is not a UUID",
            ),
            (
                cleaning(G, "nope").into_bytes(),
                "task.user_token is not a UUID",
            ),
            (
                cleaning(&G.to_uppercase(), U).into_bytes(),
                "task.game_token is not a UUID",
            ),
            (vec![b' '; MAX_RECORD_BYTES + 1], "record too large"),
        ];
        for (bytes, reason) in cases {
            let err = parse(&bytes).unwrap_err().to_string();
            assert!(
                err.starts_with(reason),
                "{err:?} should start with {reason:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_neither_crashes_nor_matters() {
        // Unknown fields are skipped without recursion; a deep task is cut off by serde_json's limit.
        let deep = "[".repeat(5000) + &"]".repeat(5000);
        let ignored = format!("{{\"log_message\":\"x\",\"a\":{deep}}}");
        assert_eq!(parse(ignored.as_bytes()).unwrap().event, Event::Other);
        let task = format!(
            "{{\"log_message\":\"{CLEANING_GAME_RECORDS}\",\"task\":{{\"game_token\":{deep}}}}}"
        );
        assert!(parse(task.as_bytes()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_json(value in arbitrary_json()) {
            let text = value.to_string();
            let _ = parse(text.as_bytes());
            let twice = serde_json::to_string(&text).unwrap();
            let _ = parse(twice.as_bytes());
        }

        #[test]
        fn valid_records_round_trip(game in any::<u128>(), user in any::<u128>()) {
            let (g, u) = (Uuid::from_u128(game), Uuid::from_u128(user));
            let record = parse(cleaning(&g.to_string(), &u.to_string()).as_bytes()).unwrap();
            prop_assert_eq!(record.event, Event::CleaningGameRecords { game_token: g, user_token: u });
        }
    }

    /// Arbitrary JSON, biased towards record-like objects so the field checks are exercised.
    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::String),
            Just(Value::String(CLEANING_GAME_RECORDS.into())),
            Just(Value::String(G.into())),
        ];
        let keys = prop_oneof![
            Just("log_message".to_string()),
            Just("task".to_string()),
            Just("game_token".to_string()),
            Just("user_token".to_string()),
            Just("delivery_id".to_string()),
            "[a-z]{1,6}",
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
