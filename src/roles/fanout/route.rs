//! A log entry as a worker receives it: the record's own JSON object with the entry id added
//! as `delivery_id` ([`with_delivery_id`]), so the worker can acknowledge exactly that entry.
//! The router ([`super::router::Router`]) sends entries in this form.

use crate::pipeline::record::{self, Event, RecordError, DELIVERY_ID_FIELD};

/// The record as routed: the same JSON object (decoded once if it came double-encoded) with the
/// delivery id as an extra field. Fails with the reason a worker would skip it for.
pub fn with_delivery_id(raw: &[u8], id: &str) -> Result<String, RecordError> {
    routed(raw, id).map(|(payload, _)| payload)
}

/// [`with_delivery_id`], and the game the record is about, if it names one.
pub(super) fn routed(raw: &[u8], id: &str) -> Result<(String, Option<String>), RecordError> {
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
