//! Every Redis key and channel name this project uses, built here and nowhere else.
//!
//! The game's own keys (those of the original) come first; the keys this implementation adds
//! follow. `docs/redis-keys.md` documents every one (a test below keeps the two in step). [`game_key_pattern`] and [`OWNED_PATTERNS`] let `clean` find them all with SCAN.

/// Hash: hero id → hero JSON.
pub const SUPERHEROS: &str = "superheros";
/// Hash: a hero collection being loaded (`id` is fresh per load), RENAMEd over [`SUPERHEROS`]
/// once complete so readers never see half of it.
pub fn superheros_loading(id: &str) -> String {
    format!("{SUPERHEROS}:loading:{id}")
}

/// Hash: user name → user token.
pub const USERS: &str = "users";
/// Sorted set: game token → number of players joined.
pub const GAMES_PARTICIPANTS: &str = "games:participants";

/// List: game tokens created for `n` participants.
pub fn games_players(n: u8) -> String {
    format!("games:players:{n}")
}

/// Set: user tokens of game `g`.
pub fn game(g: &str) -> String {
    format!("games:{g}")
}

/// String: the size game `g` was created for.
pub fn game_participants(g: &str) -> String {
    format!("games:{g}:participants")
}

/// String: the game's status (see [`status`]).
pub fn game_status(g: &str) -> String {
    format!("games:{g}:status")
}

/// String: user token of the game's host.
pub fn game_host(g: &str) -> String {
    format!("games:{g}:host")
}

/// List: turn order of living players, head = whose turn it is.
pub fn game_order(g: &str) -> String {
    format!("games:{g}:order")
}

/// Set: hero ids taken in game `g`.
pub fn game_superheros(g: &str) -> String {
    format!("games:{g}:superheros")
}

/// Hash: `id`, `attack`, `health` of user `u`'s hero in game `g`.
pub fn game_hero(g: &str, u: &str) -> String {
    format!("games:{g}:superheros:{u}")
}

/// List: attack records in the order they happened.
pub fn game_logs(g: &str) -> String {
    format!("games:{g}:logs")
}

/// SORT ... GET pattern of a field of every hero hash of game `g` (`games:<g>:superheros:*->f`);
/// `g` must be a validated token (no glob characters).
pub fn game_hero_field_pattern(g: &str, field: &str) -> String {
    format!("games:{g}:superheros:*->{field}")
}

/// Every key of game `g` except the per-player hero hashes ([`game_hero`]) and the ETL lease
/// (which keeps its own TTL): the original's keys, the server's additions and the worker's record of
/// the finished ETL. The clean routine expires them all.
pub fn game_keys(g: &str) -> [String; 16] {
    [
        game(g),
        game_participants(g),
        game_status(g),
        game_host(g),
        game_order(g),
        game_superheros(g),
        game_logs(g),
        game_created(g),
        game_ready(g),
        game_turns(g),
        game_eliminated(g),
        game_lobby_sockets(g),
        game_aliases(g),
        game_alias_of(g),
        etl_done(g),
        etl_writer(g),
    ]
}

/// Game statuses (`docs/redis-keys.md`).
pub mod status {
    pub const WAITING_LOBBY: &str = "Waiting Lobby";
    pub const STARTING: &str = "Starting";
    pub const IN_PROGRESS: &str = "In-Progress";
    pub const WAITING_PLAYER: &str = "Waiting Player";
    pub const COMPLETED: &str = "Completed";
    pub const TIMED_OUT: &str = "Timed Out";

    /// Statuses of games that are over and may be cleaned.
    pub const FINISHED: &[&str] = &[COMPLETED, TIMED_OUT];
}

// ---- Game server additions ----

/// Set: every user token ever handed out by login (lets the server refuse unknown tokens in O(1)).
pub const USER_TOKENS: &str = "games:user-tokens";

/// Sorted set: game token → deadline (ms, Redis time) of its lobby or of its current turn. Set
/// by the scripts that open a lobby or start a turn, removed when the game ends; every server
/// process enforces every game's deadline from it, so a game ends whatever server died.
pub const GAME_DEADLINES: &str = "games:deadlines";

/// Sorted set: user token → its last login, find, lobby registration or attack (ms, Redis
/// time); users idle for USER_EXPIRY are removed from `users`, [`USER_TOKENS`] and
/// [`USER_NAMES`].
pub const USERS_LAST_USE: &str = "games:users:last-use";

/// Hash: user token → user name (to remove an idle user from `users`, which maps the other way).
pub const USER_NAMES: &str = "games:users:names";

/// Hash: user token → the open lobby it waits in; a user has one open lobby at most.
pub const USERS_OPEN_LOBBY: &str = "games:users:open-lobby";

/// The parts of a per-game key name around the game token (`games:` and `:status` for
/// [`game_status`]), for scripts that name another game's key.
pub fn split_around_game(key: fn(&str) -> String) -> (String, String) {
    const MARK: &str = "\u{1}";
    let full = key(MARK);
    match full.split_once(MARK) {
        Some((before, after)) => (before.to_string(), after.to_string()),
        None => (full, String::new()),
    }
}

/// Sorted set: open lobbies for `n` players, game token → creation time (ms). A game leaves it
/// when it fills up or times out.
pub fn games_lobbies(n: u8) -> String {
    format!("games:lobbies:{n}")
}

/// String: creation time of game `g` in ms since the epoch (for the lobby timeout).
pub fn game_created(g: &str) -> String {
    format!("games:{g}:created")
}

/// Set: players of game `g` whose lobby socket is connected; the game starts when all are.
pub fn game_ready(g: &str) -> String {
    format!("games:{g}:ready")
}

/// String: turn sequence number of game `g`, incremented at every turn change (attack, timeout,
/// disconnect). A USER'S TURN push is announced once per number.
pub fn game_turns(g: &str) -> String {
    format!("games:{g}:turns")
}

/// List: user tokens in the order they fell (killed, timed out or disconnected).
pub fn game_eliminated(g: &str) -> String {
    format!("games:{g}:eliminated")
}

/// Hash: user token → id of the one lobby socket registered for it in game `g`
/// (`<server id>:<socket id>`); a second registration of the same user is refused.
pub fn game_lobby_sockets(g: &str) -> String {
    format!("games:{g}:lobby-sockets")
}

/// Hash: alias → user token of game `g`. Players see each other under these aliases only.
pub fn game_aliases(g: &str) -> String {
    format!("games:{g}:aliases")
}

/// Hash: user token → its alias in game `g` (the inverse of [`game_aliases`]).
pub fn game_alias_of(g: &str) -> String {
    format!("games:{g}:alias-of")
}

/// Pub/sub channel of game `g`'s events (start, turn, complete, timed out) between servers.
pub fn game_events(g: &str) -> String {
    format!("games:{g}:events")
}

/// Pattern a server process subscribes to once to hear the events of every game.
pub const GAME_EVENTS_PATTERN: &str = "games:*:events";

/// The game token of a [`game_events`] channel name.
pub fn game_of_events_channel(channel: &str) -> Option<&str> {
    channel
        .strip_prefix("games:")
        .and_then(|rest| rest.strip_suffix(":events"))
        .filter(|g| !g.is_empty() && !g.contains(':'))
}

// ---- Pipeline channels and the keys the fanout and workers add ----

/// The worker channel of worker `id`: `<WORKER_CHANNEL>-<id>`.
pub fn worker_channel(lobby: &str, id: &str) -> String {
    format!("{lobby}-{id}")
}

/// Pattern matching every worker channel of a lobby.
pub fn worker_channel_pattern(lobby: &str) -> String {
    format!("{}-*", escape_glob(lobby))
}

/// The worker id of a worker channel name, if it is one.
pub fn worker_id_of<'a>(lobby: &str, channel: &'a str) -> Option<&'a str> {
    channel
        .strip_prefix(lobby)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|id| !id.is_empty())
}

/// Stream: the lifecycle log. The server appends every record (XADD) inside the Lua script that
/// commits the state change the record reports; the fanouts read it as one consumer group.
pub fn log_stream(lobby: &str) -> String {
    format!("{lobby}:log")
}

/// The fanouts' consumer group on [`log_stream`].
pub fn fanout_group(lobby: &str) -> String {
    format!("{lobby}:fanouts")
}

/// Stream: entries given up on after MAX_DELIVERIES, with the reason and the workers tried.
pub fn dead_stream(lobby: &str) -> String {
    format!("{lobby}:dead")
}

/// Sorted set: worker id → Redis time (ms) of its last heartbeat. A worker beats only while its
/// processing loop makes progress; the fanout routes only to workers that beat recently.
pub fn worker_heartbeats(lobby: &str) -> String {
    format!("{lobby}:workers")
}

/// Hash: stream entry id → the workers it was routed to before its current one (space-separated).
pub fn delivery_tries(lobby: &str) -> String {
    format!("{lobby}:tries")
}

/// Hash: stream entry id → `<worker id>: <reason>` of the last failed attempt to handle it.
pub fn delivery_failures(lobby: &str) -> String {
    format!("{lobby}:failures")
}

/// String with a TTL: marks a record from another publisher (no entry id) as appended to the
/// log already, so several fanouts hearing it append it once. `digest` is its SHA-1.
pub fn foreign_seen(lobby: &str, digest: &str) -> String {
    format!("{lobby}:foreign:{digest}")
}

/// Keys of the pub/sub delivery of earlier versions; `clean --all` removes them.
pub fn legacy_delivery_keys(lobby: &str) -> [String; 6] {
    [
        "backlog",
        "delivery-seq",
        "waiting",
        "pending",
        "deadlines",
        "routes",
    ]
    .map(|suffix| format!("{lobby}:{suffix}"))
}

/// String: the claim lease on game `g`'s ETL, `<worker id>:<nonce>`, with a TTL.
pub fn etl_lease(g: &str) -> String {
    format!("games:{g}:etl:lease")
}

/// String: id of the worker whose files are game `g`'s output, set once both files are in place.
pub fn etl_done(g: &str) -> String {
    format!("games:{g}:etl:done")
}

/// String: id of the last worker that started writing game `g`'s files (they may be on disk).
pub fn etl_writer(g: &str) -> String {
    format!("games:{g}:etl:writer")
}

/// SCAN pattern of every game's ETL lease.
pub const ETL_LEASE_PATTERN: &str = "games:*:etl:lease";

/// The game token of an [`etl_lease`] key.
pub fn game_of_etl_lease(key: &str) -> Option<&str> {
    key.strip_prefix("games:")
        .and_then(|rest| rest.strip_suffix(":etl:lease"))
        .filter(|g| !g.is_empty() && !g.contains(':'))
}

/// Escapes Redis glob metacharacters so a name can be used literally inside a pattern.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// SCAN patterns of the keys that belong to one game (including this project's additions).
pub fn game_key_pattern(g: &str) -> String {
    format!("games:{g}:*")
}

/// SCAN patterns of every key this project owns, for `clean --all`. Channel-derived keys are
/// added by [`owned_patterns`] since they depend on WORKER_CHANNEL.
pub const OWNED_PATTERNS: &[&str] = &["superheros", "superheros:*", "users", "games:*"];

/// Every key pattern this project owns under the given lobby channel.
pub fn owned_patterns(lobby: &str) -> Vec<String> {
    let mut patterns: Vec<String> = OWNED_PATTERNS.iter().map(|p| p.to_string()).collect();
    patterns.push(format!("{}:*", escape_glob(lobby)));
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_channels_round_trip() {
        let lobby = "redis.lib.server.lobby";
        let ch = worker_channel(lobby, "abc123");
        assert_eq!(ch, "redis.lib.server.lobby-abc123");
        assert_eq!(worker_id_of(lobby, &ch), Some("abc123"));
        assert_eq!(worker_id_of(lobby, lobby), None);
        assert_eq!(worker_id_of(lobby, "other-x"), None);
    }

    #[test]
    fn game_events_channel_round_trips() {
        let ch = game_events("abc");
        assert_eq!(game_of_events_channel(&ch), Some("abc"));
        assert_eq!(game_of_events_channel("games:abc:logs"), None);
    }

    /// One declaration per fact: every name built here appears in `docs/redis-keys.md`.
    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/redis-keys.md");
        let (g, u, lobby) = ("<g>", "<u>", "<lobby>");
        let mut names: Vec<String> = game_keys(g).into();
        names.extend([
            game_hero(g, u),
            game_events(g),
            etl_lease(g),
            superheros_loading("<id>"),
        ]);
        names.extend(
            [
                SUPERHEROS,
                USERS,
                GAMES_PARTICIPANTS,
                USER_TOKENS,
                GAME_DEADLINES,
                USERS_LAST_USE,
                USER_NAMES,
                USERS_OPEN_LOBBY,
            ]
            .map(String::from),
        );
        names.extend([
            games_players(2).replace('2', "<n>"),
            games_lobbies(2).replace('2', "<n>"),
            lobby.to_string(),
            worker_channel(lobby, "<worker id>"),
            log_stream(lobby),
            dead_stream(lobby),
            worker_heartbeats(lobby),
            delivery_tries(lobby),
            delivery_failures(lobby),
            foreign_seen(lobby, "<sha1>"),
        ]);
        names.extend(legacy_delivery_keys(lobby));
        for name in names {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/redis-keys.md does not list `{name}`"
            );
        }
        for status in [
            status::WAITING_LOBBY,
            status::STARTING,
            status::IN_PROGRESS,
            status::WAITING_PLAYER,
            status::COMPLETED,
            status::TIMED_OUT,
        ] {
            assert!(docs.contains(&format!("`{status}`")), "status {status}");
        }
    }

    #[test]
    fn glob_escaping() {
        assert_eq!(escape_glob("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
