//! Heroes: the Super Hero API source format, the cleaning rule (`docs/redis-keys.md`, Heroes), and the stored form.
//!
//! `roster.rs` loads a collection into Redis, for `build-db` and for a game server that finds
//! the collection gone.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod roster;
pub use roster::{load_source, reload_if_missing, store};

/// The project's own invented roster, shipped in the binary.
pub const BUILTIN_ROSTER: &str = include_str!("../../data/roster.json");

/// The six source stats, in the order the source lists them.
pub const STATS: [&str; 6] = [
    "intelligence",
    "strength",
    "speed",
    "durability",
    "power",
    "combat",
];

/// A hero as stored in `superheros`: the source JSON without `id` and `response`, the stats
/// cleaned to integers, `health` and `attack` added under `powerstats`.
#[derive(Clone, Debug, PartialEq)]
pub struct Hero {
    pub id: u32,
    pub name: String,
    pub health: u64,
    pub attack: u64,
    /// The stored JSON document.
    pub document: Value,
}

/// The combat figures of a stored hero, as the game server needs them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Powerstats {
    pub health: u64,
    pub attack: u64,
}

#[derive(Deserialize)]
struct StoredHero {
    powerstats: Powerstats,
}

impl Powerstats {
    /// Reads `health` and `attack` out of a stored hero document.
    pub fn from_stored(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<StoredHero>(json).map(|h| h.powerstats)
    }
}

/// Why a source collection was refused.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("not valid JSON")]
    Json(#[from] serde_json::Error),
    #[error("expected a JSON array of heroes")]
    NotAnArray,
    #[error("the collection holds no heroes")]
    Empty,
    #[error("hero #{index}: {reason}")]
    Hero { index: usize, reason: String },
}

/// A stat as the source spells it: `"null"` and `"0"` become 1, otherwise its integer value.
pub fn clean_stat(raw: &Value) -> Result<u64, String> {
    let value = match raw {
        Value::Null => return Ok(1),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a whole number from 0"))?,
        Value::String(s) if s.trim().eq_ignore_ascii_case("null") || s.trim().is_empty() => {
            return Ok(1)
        }
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a whole number from 0"))?,
        other => return Err(format!("{other} is not a stat")),
    };
    if value > 1_000_000 {
        return Err(format!("{value} is out of range"));
    }
    Ok(if value == 0 { 1 } else { value })
}

/// health = intelligence × strength × durability × 10; attack = speed × power × combat.
pub fn combat_figures(stats: &[u64; 6]) -> (u64, u64) {
    let [intelligence, strength, speed, durability, power, combat] = *stats;
    (
        intelligence * strength * durability * 10,
        speed * power * combat,
    )
}

/// Parses a Super Hero API dump into stored heroes, refusing the whole file on the first error.
pub fn parse_collection(text: &str) -> Result<Vec<Hero>, SourceError> {
    let root: Value = serde_json::from_str(text)?;
    let Value::Array(items) = root else {
        return Err(SourceError::NotAnArray);
    };
    if items.is_empty() {
        return Err(SourceError::Empty);
    }
    let mut seen = BTreeSet::new();
    let mut heroes = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let hero = parse_hero(item).map_err(|reason| SourceError::Hero {
            index: index + 1,
            reason,
        })?;
        if !seen.insert(hero.id) {
            return Err(SourceError::Hero {
                index: index + 1,
                reason: format!("id {} appears twice", hero.id),
            });
        }
        heroes.push(hero);
    }
    Ok(heroes)
}

fn parse_hero(item: Value) -> Result<Hero, String> {
    let Value::Object(mut obj) = item else {
        return Err("is not a JSON object".into());
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
    .filter(|id| (1..=u16::MAX as u32).contains(id))
    .ok_or("has no integer id from 1 to 65535")?;
    obj.remove("response");
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(format!("id {id}: has no name")),
    };
    let Some(Value::Object(raw_stats)) = obj.get("powerstats") else {
        return Err(format!("id {id}: has no powerstats object"));
    };
    let mut stats = [0u64; 6];
    let mut cleaned = Map::new();
    for (slot, stat) in stats.iter_mut().zip(STATS) {
        let raw = raw_stats
            .get(stat)
            .ok_or_else(|| format!("id {id}: powerstats.{stat} is missing"))?;
        *slot = clean_stat(raw).map_err(|e| format!("id {id}: powerstats.{stat}: {e}"))?;
        cleaned.insert(stat.to_string(), Value::from(*slot));
    }
    let (health, attack) = combat_figures(&stats);
    cleaned.insert("health".into(), Value::from(health));
    cleaned.insert("attack".into(), Value::from(attack));
    obj.insert("powerstats".into(), Value::Object(cleaned));
    Ok(Hero {
        id,
        name,
        health,
        attack,
        document: Value::Object(obj),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_rule() {
        assert_eq!(clean_stat(&Value::from("null")), Ok(1));
        assert_eq!(clean_stat(&Value::from("0")), Ok(1));
        assert_eq!(clean_stat(&Value::from("42")), Ok(42));
        assert_eq!(clean_stat(&Value::from(7)), Ok(7));
        assert!(clean_stat(&Value::from("strong")).is_err());
        assert!(clean_stat(&Value::from("-3")).is_err());
    }

    #[test]
    fn health_and_attack() {
        // A hero with intelligence 38, strength 100, speed 17, durability 80, power 24, combat 64.
        assert_eq!(
            combat_figures(&[38, 100, 17, 80, 24, 64]),
            (3_040_000, 26_112)
        );
    }

    #[test]
    fn builtin_roster_is_valid_and_exercises_cleaning() {
        let heroes = parse_collection(BUILTIN_ROSTER).unwrap();
        assert!(heroes.len() >= 100);
        let raw: Vec<Value> = serde_json::from_str(BUILTIN_ROSTER).unwrap();
        let nulls = raw
            .iter()
            .flat_map(|h| h["powerstats"].as_object().unwrap().values())
            .filter(|v| *v == "null" || *v == "0")
            .count();
        assert!(nulls > 0);
        let stored = heroes[0].document.to_string();
        assert!(!stored.contains("\"response\""));
        let p = Powerstats::from_stored(&stored).unwrap();
        assert_eq!((p.health, p.attack), (heroes[0].health, heroes[0].attack));
    }

    #[test]
    fn malformed_collections_are_refused() {
        assert!(matches!(
            parse_collection("[{\"id\": \"1\""),
            Err(SourceError::Json(_))
        ));
        assert!(matches!(
            parse_collection("{}"),
            Err(SourceError::NotAnArray)
        ));
        assert!(matches!(parse_collection("[]"), Err(SourceError::Empty)));
        let no_stats = r#"[{"id": "1", "name": "X"}]"#;
        assert!(matches!(
            parse_collection(no_stats),
            Err(SourceError::Hero { index: 1, .. })
        ));
        let twice = r#"[{"id":"1","name":"A","powerstats":{"intelligence":"1","strength":"1","speed":"1","durability":"1","power":"1","combat":"1"}},
                        {"id":"1","name":"B","powerstats":{"intelligence":"1","strength":"1","speed":"1","durability":"1","power":"1","combat":"1"}}]"#;
        assert!(parse_collection(twice).is_err());
    }
}
