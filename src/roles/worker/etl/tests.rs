//! Unit tests of the ETL: ranking on the podium (eliminations, the turn cap, ties) and the
//! parsing of a game's log.

use super::*;

const G: &str = "6f1c0d6e-8a39-4d55-9b2a-3f3f0c9e2a10";

fn player(token: &str, hero_id: u16, health: u64) -> Player {
    Player {
        token: token.to_string(),
        hero_id,
        health,
    }
}

fn attack(attacker: usize, enemy: usize, damage: u64, enemy_health_post: u64) -> Attack {
    Attack {
        attacker,
        enemy,
        damage,
        enemy_health_post,
    }
}

/// (user, rounds, rank, delivered, received) of each podium row.
fn podium(data: &GameData) -> Vec<(String, u16, u8, u64, u64)> {
    let (meta, podium) = rows(G, data);
    assert_eq!(meta.len(), data.players.len());
    for (m, p) in meta.iter().zip(&data.players) {
        assert_eq!((m.game_token.as_str(), &m.user_token), (G, &p.token));
        assert_eq!(m.superhero_id, p.hero_id);
    }
    let mut ranks: Vec<u8> = podium.iter().map(|r| r.rank).collect();
    ranks.sort_unstable();
    assert_eq!(ranks, (1..=data.players.len() as u8).collect::<Vec<_>>());
    podium
        .into_iter()
        .map(|r| {
            assert_eq!(r.game_token, G);
            (
                r.user_token,
                r.rounds,
                r.rank,
                r.damage_delivered,
                r.damage_received,
            )
        })
        .collect()
}

fn row(
    u: &str,
    rounds: u16,
    rank: u8,
    delivered: u64,
    received: u64,
) -> (String, u16, u8, u64, u64) {
    (u.to_string(), rounds, rank, delivered, received)
}

/// Three players, attacks a=100, b=50, c=30, healths 200/100/90. a kills c early, then b
/// and a trade until b falls: c is first to fall (rank 3), b second (rank 2), a wins.
#[test]
fn early_elimination_then_last_standing() {
    let data = GameData {
        host: Some("a".into()),
        size: 3,
        players: vec![
            player("a", 1, 200 - 50 - 30),
            player("b", 2, 0),
            player("c", 3, 0),
        ],
        attacks: vec![
            attack(0, 2, 100, 0),  // a hits c: 90 -> 0
            attack(1, 0, 50, 150), // b hits a: 200 -> 150
            attack(0, 1, 100, 0),  // a hits b: 100 -> 0 (order is now a, b)
        ],
        fallen: vec![2, 1],
    };
    // c attacked nobody: it fell before its first turn.
    assert_eq!(
        podium(&data),
        vec![
            row("a", 2, 1, 200, 50),
            row("b", 1, 2, 50, 100),
            row("c", 0, 3, 0, 100),
        ]
    );
}

/// Four players ended by the MAX_TURNS cap with three alive: ranked by remaining health,
/// ties by damage delivered, then by token.
#[test]
fn turn_cap_ranks_the_living_by_health_then_damage_then_token() {
    let data = GameData {
        host: Some("d".into()),
        size: 4,
        players: vec![
            player("a", 11, 500),
            player("b", 12, 500),
            player("c", 13, 0),
            player("d", 14, 700),
        ],
        attacks: vec![
            attack(0, 2, 300, 300), // a hits c: 600 -> 300
            attack(1, 2, 300, 0),   // b hits c: 300 -> 0
            attack(3, 0, 200, 500), // d hits a: 700 -> 500
            attack(0, 1, 300, 800), // a hits b: 1100 -> 800
            attack(1, 3, 100, 700), // b hits d: 800 -> 700
            attack(3, 1, 300, 500), // d hits b: 800 -> 500 — the cap (6 attacks)
        ],
        fallen: vec![2],
    };
    // Alive: d 700; a and b 500 each, a delivered 600 > b 400.
    assert_eq!(
        podium(&data),
        vec![
            row("a", 2, 2, 600, 200),
            row("b", 2, 3, 400, 600),
            row("c", 0, 4, 0, 600),
            row("d", 2, 1, 500, 100),
        ]
    );
}

/// Equal health and damage: the token decides.
#[test]
fn full_ties_are_broken_by_token() {
    let data = GameData {
        host: None,
        size: 2,
        players: vec![player("x", 1, 10), player("y", 2, 10)],
        attacks: vec![attack(1, 0, 5, 10), attack(0, 1, 5, 10)],
        fallen: vec![],
    };
    assert_eq!(
        podium(&data),
        vec![row("x", 1, 1, 5, 5), row("y", 1, 2, 5, 5)]
    );
}

/// A player eliminated by a turn timeout (in the fall list, no killing blow in the log)
/// falls before a player killed later; a player at 0 health missing from the list still
/// counts as fallen, after the listed ones.
#[test]
fn timeouts_and_missing_fall_records() {
    let data = GameData {
        host: None,
        size: 4,
        players: vec![
            player("a", 1, 0),
            player("b", 2, 40),
            player("c", 3, 0),
            player("d", 4, 0),
        ],
        attacks: vec![
            attack(1, 0, 60, 0), // b kills a (not listed as fallen)
            attack(1, 3, 60, 0), // b kills d (listed)
        ],
        // c timed out first, then d was killed.
        fallen: vec![2, 3],
    };
    assert_eq!(
        podium(&data),
        vec![
            row("a", 0, 2, 0, 60),
            row("b", 2, 1, 120, 0),
            row("c", 0, 4, 0, 0),
            row("d", 0, 3, 0, 60),
        ]
    );
}

#[test]
fn malformed_logs_are_errors() {
    let heroes = vec![
        Some("a".to_string()),
        Some("1".to_string()),
        Some("10".to_string()),
        Some("b".to_string()),
        Some("2".to_string()),
        Some("0".to_string()),
    ];
    let good = r#"{"TIMESTAMP": "t", "PAYLOAD": {"GAME_TOKEN": "g", "USER_TOKEN": "a"}, "STATUS": {"ACTION": "ATTACK", "DETAILS": {"ENEMY_TOKEN": "b", "ENEMY_DAMAGE": 5, "ENEMY_HEALTH_PRIOR": 5, "ENEMY_HEALTH_POST": 0}}}"#;
    let data = parse_game(G, None, Some("2".into()), &heroes, &[good.to_string()], &[]).unwrap();
    assert_eq!(data.attacks, vec![attack(0, 1, 5, 0)]);
    for bad in [
        "not json".to_string(),
        "{}".to_string(),
        good.replace("\"b\"", "\"zz\""),
        good.replace("5,", "-5,"),
    ] {
        assert!(
            parse_game(G, None, None, &heroes, std::slice::from_ref(&bad), &[]).is_err(),
            "{bad}"
        );
    }
    let mut no_health = heroes.clone();
    no_health[5] = None;
    assert!(parse_game(G, None, None, &no_health, &[], &[]).is_err());
    assert!(parse_game(G, None, None, &heroes, &[], &["zz".to_string()]).is_err());
}
