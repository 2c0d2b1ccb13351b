//! Issue 5: `superhero report` names unreadable files and games written twice, and fails only
//! with --strict.

use crate::common;

use std::path::Path;

use common::superhero;
use superhero::pipeline::sink::{self, MetaRow, PodiumRow};

fn write(out: &Path, worker: &str, game: &str, heroes: &[(u16, u64)]) {
    let users: Vec<String> = (0..heroes.len())
        .map(|i| format!("00000000-0000-4000-8000-00000000000{i}"))
        .collect();
    let meta: Vec<MetaRow> = users
        .iter()
        .zip(heroes)
        .map(|(u, (hero, _))| MetaRow {
            game_token: game.into(),
            user_token: u.clone(),
            superhero_id: *hero,
        })
        .collect();
    let podium: Vec<PodiumRow> = users
        .iter()
        .zip(heroes)
        .enumerate()
        .map(|(i, (u, (_, damage)))| PodiumRow {
            game_token: game.into(),
            user_token: u.clone(),
            rounds: 3,
            rank: i as u8 + 1,
            damage_delivered: *damage,
            damage_received: 10,
        })
        .collect();
    common::write_pair_blocking(out, worker, game, &meta, &podium).expect("write_game");
}

fn report(out: &Path, extra: &[&str]) -> (i32, String) {
    let result = superhero(out)
        .arg("report")
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        .output()
        .expect("run report");
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    let stderr = String::from_utf8_lossy(&result.stderr).to_string();
    (
        result.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[test]
fn report_names_truncated_files_and_duplicates_and_fails_only_when_strict() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let (g1, g2, g3) = (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "33333333-3333-4333-8333-333333333333",
    );
    write(out, "w1", g1, &[(7, 300), (9, 100)]);
    write(out, "w2", g2, &[(7, 50), (8, 500), (9, 20)]);
    write(out, "w1", g3, &[(8, 40), (9, 90)]);

    // A clean folder: no problems, the numbers add up.
    let (code, text) = report(out, &["--format", "json", "--strict"]);
    assert_eq!(code, 0, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    assert_eq!(json["meta"]["games"], 3, "{json}");
    assert_eq!(json["meta"]["rows"], 7, "{json}");
    assert_eq!(json["podium"]["rows"], 7, "{json}");

    // g2 written again by another worker, and one file cut in half.
    write(out, "w3", g2, &[(7, 50), (8, 500), (9, 20)]);
    let victim = sink::file_path(out, sink::PODIUM_TABLE, g3, "w1");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();

    let (code, text) = report(out, &[]);
    assert_eq!(code, 0, "problems fail only with --strict:\n{text}");
    assert!(text.contains(g2), "duplicated game not named:\n{text}");
    let victim_name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        text.contains(&victim_name),
        "truncated file not named:\n{text}"
    );
    assert!(text.contains("leaderboard"), "{text}");

    let (code, text) = report(out, &["--strict"]);
    assert_ne!(code, 0, "--strict must fail on problems:\n{text}");

    let (code, text) = report(out, &["--format", "json"]);
    assert_eq!(code, 0, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON report");
    let listed = json.to_string();
    assert!(
        listed.contains(g2) && listed.contains(&victim_name),
        "{json}"
    );
}
