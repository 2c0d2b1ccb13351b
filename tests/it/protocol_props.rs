//! Issue 6: property test of the WebSocket request parsers. Whatever text arrives, parsing gives
//! a payload or a STATUS reason and never panics; a reason is always one of the documented ones.

use proptest::prelude::*;
use serde_json::{Map, Value};
use superhero::roles::server::protocol::{self, reason, Route};

/// Arbitrary JSON values, nested a few levels, with the API's field names over-represented.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        Just(Value::from(uuid::Uuid::new_v4().to_string())),
        Just(Value::from("ATTACK")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("PAYLOAD".to_string()),
        Just("USER".to_string()),
        Just("USER_TOKEN".to_string()),
        Just("GAME_TOKEN".to_string()),
        Just("ENEMY_TOKEN".to_string()),
        Just("PARTICIPANTS".to_string()),
        Just("ACTION".to_string()),
        "[A-Z_]{0,12}",
    ]
}

const REASONS: &[&str] = &[
    reason::INVALID_JSON,
    reason::MISSING_PAYLOAD,
    reason::MISSING_USER,
    reason::INVALID_USER,
    reason::MISSING_USER_TOKEN,
    reason::UNKNOWN_USER_TOKEN,
    reason::MISSING_GAME_TOKEN,
    reason::UNKNOWN_GAME_TOKEN,
    reason::MISSING_ENEMY_TOKEN,
    reason::INVALID_ENEMY,
    reason::MISSING_PARTICIPANTS,
    reason::INVALID_PARTICIPANTS,
    reason::MISSING_ACTION,
    reason::INVALID_ACTION,
];

/// Runs every parser on one request text; every failure must be a documented reason.
fn parse_all(text: &str) -> Result<(), TestCaseError> {
    let payload = match protocol::payload_of(text) {
        Ok(p) => p,
        Err(r) => {
            prop_assert!(REASONS.contains(&r), "undocumented reason {r}");
            return Ok(());
        }
    };
    let results = [
        protocol::LoginPayload::parse(&payload).map(|_| ()),
        protocol::FindPayload::parse(&payload).map(|p| {
            assert!((2..=8).contains(&p.participants));
            assert!(uuid::Uuid::parse_str(&p.user_token).is_ok());
        }),
        protocol::GameUserPayload::parse(&payload).map(|_| ()),
        protocol::ActionPayload::parse(&payload).map(|p| assert_eq!(p.action, "ATTACK")),
    ];
    for r in results {
        if let Err(r) = r {
            prop_assert!(REASONS.contains(&r), "undocumented reason {r}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        parse_all(&text)?;
        let _ = Route::from_path(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        parse_all(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        parse_all(&value.to_string())?;
        // The same value wrapped as a request exercises the field parsers on odd types.
        let request = serde_json::json!({"PAYLOAD": value});
        parse_all(&request.to_string())?;
    }

    #[test]
    fn deep_nesting_is_a_reason_not_a_crash(depth in 1usize..5000) {
        let text = format!("{{\"PAYLOAD\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        parse_all(&text)?;
    }
}

#[test]
fn valid_requests_parse() {
    let g = uuid::Uuid::new_v4().to_string();
    let text = format!(
        r#"{{"PAYLOAD": {{"GAME_TOKEN": "{g}", "USER_TOKEN": "{g}", "PARTICIPANTS": 3, "USER": "x", "ACTION": "ATTACK"}}}}"#
    );
    let payload = protocol::payload_of(&text).unwrap();
    assert_eq!(
        protocol::FindPayload::parse(&payload).map(|p| p.participants),
        Ok(3)
    );
    assert_eq!(
        protocol::LoginPayload::parse(&payload).map(|p| p.user),
        Ok("x".to_string())
    );
    assert_eq!(
        protocol::ActionPayload::parse(&payload).map(|p| p.enemy_token),
        Err(reason::MISSING_ENEMY_TOKEN)
    );
}

/// What the bot sends (the types' serde form) is what the server parses back (their `parse`).
#[test]
fn every_request_the_bot_sends_parses_back_to_itself() {
    let (g, u, e) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    fn back<P: serde::Serialize>(payload: &P) -> serde_json::Map<String, serde_json::Value> {
        let text = serde_json::to_string(&protocol::Request { payload }).unwrap();
        protocol::payload_of(&text).unwrap()
    }
    let login = protocol::LoginPayload { user: "ana".into() };
    assert_eq!(protocol::LoginPayload::parse(&back(&login)), Ok(login));
    let find = protocol::FindPayload {
        user_token: u.clone(),
        participants: 3,
    };
    assert_eq!(protocol::FindPayload::parse(&back(&find)), Ok(find));
    let lobby = protocol::GameUserPayload {
        game_token: g.clone(),
        user_token: u.clone(),
    };
    assert_eq!(protocol::GameUserPayload::parse(&back(&lobby)), Ok(lobby));
    let attack = protocol::ActionPayload {
        game_token: g,
        user_token: u,
        enemy_token: e,
        action: protocol::ATTACK.into(),
    };
    assert_eq!(protocol::ActionPayload::parse(&back(&attack)), Ok(attack));
}
