//! `superhero report`: what the pipeline produced, read back from the Parquet output.
//!
//! Walks `OUTPUT_DIR/superhero/{GAME_META,GAME_PODIUM}` (every worker's files, in a folder or an
//! object store: [`sink::Output`]), counts games and
//! rows, files per worker, games written more than once and files that cannot be read (named, not
//! a crash), and joins META with PODIUM into a hero leaderboard.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use serde::Serialize;

use crate::pipeline::sink::{self, MetaRow, Output, PodiumRow};

/// One table's files.
#[derive(Debug, Default, Serialize)]
pub struct TableSummary {
    pub files: usize,
    pub rows: usize,
    pub games: usize,
    /// Games with more than one file in this table: token → file names.
    pub duplicated_games: BTreeMap<String, Vec<String>>,
}

/// A file that could not be read, and why.
#[derive(Debug, Serialize)]
pub struct Unreadable {
    /// A file path or an object URL.
    pub path: String,
    pub reason: String,
}

/// A hero's record across all games.
#[derive(Debug, Serialize, PartialEq)]
pub struct HeroStanding {
    pub superhero_id: u16,
    pub games: u64,
    pub wins: u64,
    pub win_rate: f64,
    pub mean_damage_delivered: f64,
}

/// Everything `report` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `<OUTPUT_DIR>/superhero`: a folder or a URL.
    pub output_dir: String,
    pub meta: TableSummary,
    pub podium: TableSummary,
    /// Files per worker id, both tables together.
    pub files_per_worker: BTreeMap<String, usize>,
    /// Games with a META file but no PODIUM file, or the other way round.
    pub incomplete_games: Vec<String>,
    pub unreadable: Vec<Unreadable>,
    pub leaderboard: Vec<HeroStanding>,
}

impl Report {
    /// True when something is wrong: duplicates, unreadable files, half-written games.
    pub fn has_problems(&self) -> bool {
        !self.meta.duplicated_games.is_empty()
            || !self.podium.duplicated_games.is_empty()
            || !self.unreadable.is_empty()
            || !self.incomplete_games.is_empty()
    }
}

/// The finished files of one table, skipping hidden temporaries.
pub async fn table_files(output: &Output, table: &str) -> Result<Vec<String>> {
    let mut names = output.list(table).await?;
    names.retain(|name| name.ends_with(".gz") && !name.starts_with('.'));
    Ok(names)
}

/// Reads one table: rows by game, summary, and unreadable files.
#[allow(clippy::too_many_arguments)]
async fn read_table<R>(
    output: &Output,
    table: &str,
    parse: impl Fn(Vec<u8>) -> Result<Vec<R>>,
    game_of: impl Fn(&R) -> &str,
    summary: &mut TableSummary,
    per_worker: &mut BTreeMap<String, usize>,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Vec<R>> {
    let mut rows = Vec::new();
    let mut files_of_game: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let location = output.table_location(table);
    for name in table_files(output, table).await? {
        let path = format!("{location}/{name}");
        let Some((game, worker)) = sink::parse_file_name(&name) else {
            unreadable.push(Unreadable {
                path,
                reason: "name is not <game_token>_<worker id>.gz".into(),
            });
            continue;
        };
        let (game, worker) = (game.to_string(), worker.to_string());
        match output.read(table, &name).await.and_then(&parse) {
            Ok(file_rows) => {
                if let Some(bad) = file_rows.iter().find(|r| game_of(r) != game) {
                    unreadable.push(Unreadable {
                        path,
                        reason: format!(
                            "holds rows of game {} but is named for {game}",
                            game_of(bad)
                        ),
                    });
                    continue;
                }
                summary.files += 1;
                summary.rows += file_rows.len();
                *per_worker.entry(worker).or_default() += 1;
                files_of_game.entry(game).or_default().push(name);
                rows.extend(file_rows);
            }
            Err(e) => unreadable.push(Unreadable {
                path,
                reason: format!("{e:#}"),
            }),
        }
    }
    summary.games = files_of_game.len();
    summary.duplicated_games = files_of_game
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .collect();
    Ok(rows)
}

/// Builds the report of everything under `output`.
pub async fn build(output: &Output) -> Result<Report> {
    let mut report = Report {
        output_dir: output.dataset_location(),
        meta: TableSummary::default(),
        podium: TableSummary::default(),
        files_per_worker: BTreeMap::new(),
        incomplete_games: Vec::new(),
        unreadable: Vec::new(),
        leaderboard: Vec::new(),
    };
    let meta = read_table(
        output,
        sink::META_TABLE,
        sink::meta_from_bytes,
        |r: &MetaRow| r.game_token.as_str(),
        &mut report.meta,
        &mut report.files_per_worker,
        &mut report.unreadable,
    )
    .await?;
    let podium = read_table(
        output,
        sink::PODIUM_TABLE,
        sink::podium_from_bytes,
        |r: &PodiumRow| r.game_token.as_str(),
        &mut report.podium,
        &mut report.files_per_worker,
        &mut report.unreadable,
    )
    .await?;
    let meta_games: BTreeSet<&str> = meta.iter().map(|r| r.game_token.as_str()).collect();
    let podium_games: BTreeSet<&str> = podium.iter().map(|r| r.game_token.as_str()).collect();
    report.incomplete_games = meta_games
        .symmetric_difference(&podium_games)
        .map(|g| g.to_string())
        .collect();
    report.leaderboard = leaderboard(&meta, &podium);
    Ok(report)
}

/// Joins META (which hero each player had) with PODIUM (how it went) per hero.
pub fn leaderboard(meta: &[MetaRow], podium: &[PodiumRow]) -> Vec<HeroStanding> {
    let hero_of: HashMap<(&str, &str), u16> = meta
        .iter()
        .map(|r| {
            (
                (r.game_token.as_str(), r.user_token.as_str()),
                r.superhero_id,
            )
        })
        .collect();
    // Each (game, player) counts once, even if a game was written twice.
    let mut seen = BTreeSet::new();
    let mut totals: BTreeMap<u16, (u64, u64, u64)> = BTreeMap::new();
    for row in podium {
        let key = (row.game_token.as_str(), row.user_token.as_str());
        if !seen.insert(key) {
            continue;
        }
        let Some(&hero) = hero_of.get(&key) else {
            continue;
        };
        let entry = totals.entry(hero).or_default();
        entry.0 += 1;
        entry.1 += u64::from(row.rank == 1);
        entry.2 += row.damage_delivered;
    }
    let mut standings: Vec<HeroStanding> = totals
        .into_iter()
        .map(|(superhero_id, (games, wins, damage))| HeroStanding {
            superhero_id,
            games,
            wins,
            win_rate: wins as f64 / games as f64,
            mean_damage_delivered: damage as f64 / games as f64,
        })
        .collect();
    standings.sort_by(|a, b| {
        b.wins
            .cmp(&a.wins)
            .then(b.win_rate.total_cmp(&a.win_rate))
            .then(b.games.cmp(&a.games))
            .then(a.superhero_id.cmp(&b.superhero_id))
    });
    standings
}

/// Human-readable report; the leaderboard cut to `top` heroes.
pub fn render_table(r: &Report, top: usize) -> String {
    let mut out = format!("output: {}\n\n", r.output_dir);
    out.push_str(&format!(
        "{:<12} {:>7} {:>7} {:>7} {:>10}\n",
        "table", "files", "rows", "games", "duplicated"
    ));
    for (name, t) in [(sink::META_TABLE, &r.meta), (sink::PODIUM_TABLE, &r.podium)] {
        out.push_str(&format!(
            "{name:<12} {:>7} {:>7} {:>7} {:>10}\n",
            t.files,
            t.rows,
            t.games,
            t.duplicated_games.len()
        ));
    }
    out.push_str("\nfiles per worker\n");
    for (worker, n) in &r.files_per_worker {
        out.push_str(&format!("  {worker:<24} {n}\n"));
    }
    for (name, t) in [(sink::META_TABLE, &r.meta), (sink::PODIUM_TABLE, &r.podium)] {
        for (game, files) in &t.duplicated_games {
            out.push_str(&format!(
                "DUPLICATE {name} game {game}: {}\n",
                files.join(", ")
            ));
        }
    }
    for game in &r.incomplete_games {
        out.push_str(&format!(
            "INCOMPLETE game {game}: only one of the two tables has it\n"
        ));
    }
    for u in &r.unreadable {
        out.push_str(&format!("UNREADABLE {}: {}\n", u.path, u.reason));
    }
    out.push_str(&format!("\nhero leaderboard (top {top})\n"));
    out.push_str(&format!(
        "{:>6} {:>6} {:>6} {:>9} {:>16}\n",
        "hero", "games", "wins", "win rate", "mean damage"
    ));
    for h in r.leaderboard.iter().take(top) {
        out.push_str(&format!(
            "{:>6} {:>6} {:>6} {:>8.1}% {:>16.0}\n",
            h.superhero_id,
            h.games,
            h.wins,
            h.win_rate * 100.0,
            h.mean_damage_delivered
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaderboard_joins_and_counts_each_player_once() {
        let meta = |g: &str, u: &str, h: u16| MetaRow {
            game_token: g.into(),
            user_token: u.into(),
            superhero_id: h,
        };
        let podium = |g: &str, u: &str, rank: u8, dmg: u64| PodiumRow {
            game_token: g.into(),
            user_token: u.into(),
            rounds: 1,
            rank,
            damage_delivered: dmg,
            damage_received: 0,
        };
        let m = vec![
            meta("g1", "a", 5),
            meta("g1", "b", 6),
            meta("g2", "c", 5),
            meta("g2", "d", 7),
        ];
        let p = vec![
            podium("g1", "a", 1, 100),
            podium("g1", "b", 2, 50),
            podium("g1", "a", 1, 100), // written twice
            podium("g2", "c", 2, 20),
            podium("g2", "d", 1, 80),
        ];
        let board = leaderboard(&m, &p);
        let five = board.iter().find(|h| h.superhero_id == 5).unwrap();
        assert_eq!((five.games, five.wins), (2, 1));
        assert_eq!(five.mean_damage_delivered, 60.0);
        assert_eq!(board.len(), 3);
    }
}
