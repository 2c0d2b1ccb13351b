//! Every Redis key and channel name this project uses, built here and nowhere else.
//!
//! The keys of games, users and the hero collection belong to a shard and are methods of
//! [`Keys`] (one value per shard, made by [`crate::pipeline::shard::Layout`]); for the single
//! layout they are the original's names exactly. Pub/sub channels, the pipeline's keys and the
//! names of earlier versions stay free functions. `docs/redis-keys.md` documents every one (a
//! test below keeps the two in step). [`owned_patterns`] lets `clean` find them all with SCAN.

/// The names of one shard's keys: today's names for the single layout, or each with the
/// shard's hash tag (`{<lobby>:<s>}`) so every key a script touches lies in one slot of a
/// Redis Cluster. Built by [`crate::pipeline::shard::Layout`]; the tag goes after a name's first
/// part (`games:{t}:<g>:status`, `users:{t}`), so `clean`'s patterns find both forms.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Keys {
    /// `{<lobby>:<s>}`, or None for the single layout.
    tag: Option<String>,
}

impl Keys {
    /// Today's names, unchanged: the original tools read them on a single Redis.
    pub(crate) fn single() -> Keys {
        Keys { tag: None }
    }

    /// The names of the shard whose hash tag is `tag` (braces included).
    pub(crate) fn tagged(tag: String) -> Keys {
        Keys { tag: Some(tag) }
    }

    /// The shard's hash tag, braces included; None for the single layout.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `games:<rest>`, or `games:{t}:<rest>`.
    fn games(&self, rest: &str) -> String {
        match &self.tag {
            None => format!("games:{rest}"),
            Some(tag) => format!("games:{tag}:{rest}"),
        }
    }

    /// `name`, or `name:{t}`.
    fn own(&self, name: &str) -> String {
        match &self.tag {
            None => name.to_string(),
            Some(tag) => format!("{name}:{tag}"),
        }
    }

    /// Hash: hero id → hero JSON. Each shard holds a copy, so a find touches one slot.
    pub fn superheros(&self) -> String {
        self.own("superheros")
    }

    /// Hash: a hero collection being loaded (`id` is fresh per load), RENAMEd over
    /// [`Keys::superheros`] once complete so readers never see half of it.
    pub fn superheros_loading(&self, id: &str) -> String {
        format!("{}:loading:{id}", self.superheros())
    }

    /// Hash: user name → user token.
    pub fn users(&self) -> String {
        self.own("users")
    }

    /// Sorted set: game token → number of players joined.
    pub fn games_participants(&self) -> String {
        self.games("participants")
    }

    /// List: game tokens created for `n` participants.
    pub fn games_players(&self, n: u8) -> String {
        self.games(&format!("players:{n}"))
    }

    /// Set: user tokens of game `g`.
    pub fn game(&self, g: &str) -> String {
        self.games(g)
    }

    /// String: the size game `g` was created for.
    pub fn game_participants(&self, g: &str) -> String {
        self.games(&format!("{g}:participants"))
    }

    /// String: the game's status (see [`status`]).
    pub fn game_status(&self, g: &str) -> String {
        self.games(&format!("{g}:status"))
    }

    /// String: user token of the game's host.
    pub fn game_host(&self, g: &str) -> String {
        self.games(&format!("{g}:host"))
    }

    /// List: turn order of living players, head = whose turn it is.
    pub fn game_order(&self, g: &str) -> String {
        self.games(&format!("{g}:order"))
    }

    /// Set: hero ids taken in game `g`.
    pub fn game_superheros(&self, g: &str) -> String {
        self.games(&format!("{g}:superheros"))
    }

    /// Hash: `id`, `attack`, `health` of user `u`'s hero in game `g`.
    pub fn game_hero(&self, g: &str, u: &str) -> String {
        self.games(&format!("{g}:superheros:{u}"))
    }

    /// List: attack records in the order they happened.
    pub fn game_logs(&self, g: &str) -> String {
        self.games(&format!("{g}:logs"))
    }

    /// SORT ... GET pattern of a field of every hero hash of game `g`
    /// (`games:<g>:superheros:*->f`); `g` must be a validated token (no glob characters).
    pub fn game_hero_field_pattern(&self, g: &str, field: &str) -> String {
        format!("{}->{field}", self.game_hero(g, "*"))
    }

    /// Every key of game `g` except the per-player hero hashes ([`Keys::game_hero`]) and the
    /// ETL lease (which keeps its own TTL): the original's keys, the server's additions and the
    /// worker's record of the finished ETL. The clean routine expires them all.
    pub fn game_keys(&self, g: &str) -> [String; 16] {
        [
            self.game(g),
            self.game_participants(g),
            self.game_status(g),
            self.game_host(g),
            self.game_order(g),
            self.game_superheros(g),
            self.game_logs(g),
            self.game_created(g),
            self.game_ready(g),
            self.game_turns(g),
            self.game_eliminated(g),
            self.game_lobby_sockets(g),
            self.game_aliases(g),
            self.game_alias_of(g),
            self.etl_done(g),
            self.etl_writer(g),
        ]
    }
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

impl Keys {
    /// Set: every user token ever handed out by login (lets the server refuse unknown tokens
    /// in O(1)).
    pub fn user_tokens(&self) -> String {
        self.games("user-tokens")
    }

    /// Sorted set: game token → deadline (ms, Redis time) of its lobby or of its current turn.
    /// Set by the scripts that open a lobby or start a turn, removed when the game ends; every
    /// server process enforces every game's deadline from it, so a game ends whatever server
    /// died.
    pub fn game_deadlines(&self) -> String {
        self.games("deadlines")
    }

    /// Sorted set: user token → its last login, find, lobby registration or attack (ms, Redis
    /// time); users idle for USER_EXPIRY are removed from `users`, [`Keys::user_tokens`] and
    /// [`Keys::user_names`].
    pub fn users_last_use(&self) -> String {
        self.games("users:last-use")
    }

    /// Hash: user token → user name (to remove an idle user from `users`, which maps the other
    /// way).
    pub fn user_names(&self) -> String {
        self.games("users:names")
    }

    /// Hash: user token → the open lobby it waits in; a user has one open lobby at most.
    pub fn users_open_lobby(&self) -> String {
        self.games("users:open-lobby")
    }

    /// The parts of a per-game key name around the game token (`games:` and `:status` for
    /// [`Keys::game_status`]), for scripts that name another game's key.
    pub fn split_around_game(&self, key: fn(&Keys, &str) -> String) -> (String, String) {
        const MARK: &str = "\u{1}";
        let full = key(self, MARK);
        match full.split_once(MARK) {
            Some((before, after)) => (before.to_string(), after.to_string()),
            None => (full, String::new()),
        }
    }

    /// Sorted set: open lobbies for `n` players, game token → creation time (ms). A game leaves
    /// it when it fills up or times out.
    pub fn games_lobbies(&self, n: u8) -> String {
        self.games(&format!("lobbies:{n}"))
    }

    /// String: creation time of game `g` in ms since the epoch (for the lobby timeout).
    pub fn game_created(&self, g: &str) -> String {
        self.games(&format!("{g}:created"))
    }

    /// Set: players of game `g` whose lobby socket is connected; the game starts when all are.
    pub fn game_ready(&self, g: &str) -> String {
        self.games(&format!("{g}:ready"))
    }

    /// String: turn sequence number of game `g`, incremented at every turn change (attack,
    /// timeout, disconnect). A USER'S TURN push is announced once per number.
    pub fn game_turns(&self, g: &str) -> String {
        self.games(&format!("{g}:turns"))
    }

    /// List: user tokens in the order they fell (killed, timed out or disconnected).
    pub fn game_eliminated(&self, g: &str) -> String {
        self.games(&format!("{g}:eliminated"))
    }

    /// Hash: user token → id of the one lobby socket registered for it in game `g`
    /// (`<server id>:<socket id>`); a second registration of the same user is refused.
    pub fn game_lobby_sockets(&self, g: &str) -> String {
        self.games(&format!("{g}:lobby-sockets"))
    }

    /// Hash: alias → user token of game `g`. Players see each other under these aliases only.
    pub fn game_aliases(&self, g: &str) -> String {
        self.games(&format!("{g}:aliases"))
    }

    /// Hash: user token → its alias in game `g` (the inverse of [`Keys::game_aliases`]).
    pub fn game_alias_of(&self, g: &str) -> String {
        self.games(&format!("{g}:alias-of"))
    }

    /// String: the claim lease on game `g`'s ETL, `<worker id>:<nonce>`, with a TTL.
    pub fn etl_lease(&self, g: &str) -> String {
        self.games(&format!("{g}:etl:lease"))
    }

    /// String: id of the worker whose files are game `g`'s output, set once both files are in
    /// place.
    pub fn etl_done(&self, g: &str) -> String {
        self.games(&format!("{g}:etl:done"))
    }

    /// String: id of the last worker that started writing game `g`'s files (they may be on
    /// disk).
    pub fn etl_writer(&self, g: &str) -> String {
        self.games(&format!("{g}:etl:writer"))
    }

    /// SCAN pattern of the keys that belong to game `g` (including this project's additions).
    pub fn game_key_pattern(&self, g: &str) -> String {
        format!("{}:*", escape_glob(&self.game(g)))
    }

    /// `<lobby>:<name>`, or `{<lobby>:<s>}:<name>` (the tag names the lobby already): the
    /// keys of this shard's log, which the fanout's scripts touch together.
    fn log_key(&self, lobby: &str, name: &str) -> String {
        match &self.tag {
            None => format!("{lobby}:{name}"),
            Some(tag) => format!("{tag}:{name}"),
        }
    }

    /// Stream: the lifecycle log this shard's scripts append to: `<lobby>:log`, or
    /// `{<lobby>:<s>}:log`.
    pub fn log_stream(&self, lobby: &str) -> String {
        self.log_key(lobby, "log")
    }

    /// Stream: this shard's dead letters ([`dead_stream`] for the single layout).
    pub fn dead_stream(&self, lobby: &str) -> String {
        self.log_key(lobby, "dead")
    }

    /// Hash: the workers each of this shard's log entries was routed to before
    /// ([`delivery_tries`]).
    pub fn delivery_tries(&self, lobby: &str) -> String {
        self.log_key(lobby, "tries")
    }

    /// Hash: the last failure noted for each of this shard's log entries
    /// ([`delivery_failures`]).
    pub fn delivery_failures(&self, lobby: &str) -> String {
        self.log_key(lobby, "failures")
    }

    /// String with a TTL: the consumer name of the fanout that reads this shard's log (a
    /// tagged layout only; on the single layout every fanout reads the one log).
    pub fn fanout_lease(&self, lobby: &str) -> String {
        self.log_key(lobby, "fanout")
    }
}

/// Where a game key parsed by [`parse_game_key`] lives, and its game token.
pub fn parse_game_key<'a>(key: &'a str, suffix: &str) -> Option<(Keys, &'a str)> {
    let rest = key.strip_prefix("games:")?;
    let (keys, rest) = match rest.strip_prefix('{') {
        Some(tagged) => {
            let (inside, rest) = tagged.split_once("}:")?;
            (Keys::tagged(format!("{{{inside}}}")), rest)
        }
        None => (Keys::single(), rest),
    };
    let g = rest.strip_suffix(suffix)?;
    (!g.is_empty() && !g.contains(':') && !g.contains('{')).then_some((keys, g))
}

/// String: the layout every role on this Redis uses, stored once by the first role that writes
/// data (`pipeline::shard`): the number of shards. Absent: the single layout.
pub const SHARD_COUNT: &str = "superhero:shards";

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
    Keys::single().log_stream(lobby)
}

/// The fanouts' consumer group on [`log_stream`].
pub fn fanout_group(lobby: &str) -> String {
    format!("{lobby}:fanouts")
}

/// Stream: entries given up on after MAX_DELIVERIES, with the reason and the workers tried.
pub fn dead_stream(lobby: &str) -> String {
    Keys::single().dead_stream(lobby)
}

/// Sorted set: worker id → Redis time (ms) of its last heartbeat. A worker beats only while its
/// processing loop makes progress; the fanout routes only to workers that beat recently.
pub fn worker_heartbeats(lobby: &str) -> String {
    format!("{lobby}:workers")
}

/// Sorted set: fanout consumer name → Redis time (ms) of its last beat; on a sharded layout the
/// fanouts divide the shards by the number of fresh ones.
pub fn fanout_heartbeats(lobby: &str) -> String {
    format!("{lobby}:fanout-heartbeats")
}

/// Hash: stream entry id → the workers it was routed to before its current one (space-separated).
pub fn delivery_tries(lobby: &str) -> String {
    Keys::single().delivery_tries(lobby)
}

/// Hash: stream entry id → `<worker id>: <reason>` of the last failed attempt to handle it.
pub fn delivery_failures(lobby: &str) -> String {
    Keys::single().delivery_failures(lobby)
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

/// SCAN pattern of every game's ETL lease.
pub const ETL_LEASE_PATTERN: &str = "games:*:etl:lease";

/// The shard and game token of an [`Keys::etl_lease`] key.
pub fn game_of_etl_lease(key: &str) -> Option<(Keys, &str)> {
    parse_game_key(key, ":etl:lease")
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

/// SCAN patterns of every key this project owns, for `clean --all`. Channel-derived keys are
/// added by [`owned_patterns`] since they depend on WORKER_CHANNEL.
pub const OWNED_PATTERNS: &[&str] = &[
    "superheros",
    "superheros:*",
    "users",
    "games:*",
    SHARD_COUNT,
];

/// Every key pattern this project owns under the given lobby channel: its shards' user
/// registries and log streams (`users:{<lobby>:…`, `{<lobby>:…`) included.
pub fn owned_patterns(lobby: &str) -> Vec<String> {
    let mut patterns: Vec<String> = OWNED_PATTERNS.iter().map(|p| p.to_string()).collect();
    let lobby = escape_glob(lobby);
    patterns.push(format!("{lobby}:*"));
    patterns.push(format!("users:{{{lobby}:*"));
    patterns.push(format!("{{{lobby}:*"));
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

    /// Every shard-scoped name, built by `keys` for game `g`, user `u` and size `n`.
    fn shard_names(keys: &Keys, g: &str, u: &str, n: &str) -> Vec<String> {
        let mut names: Vec<String> = keys.game_keys(g).into();
        names.extend([
            keys.game_hero(g, u),
            keys.etl_lease(g),
            keys.superheros_loading("<id>"),
            keys.superheros(),
            keys.users(),
            keys.games_participants(),
            keys.user_tokens(),
            keys.game_deadlines(),
            keys.users_last_use(),
            keys.user_names(),
            keys.users_open_lobby(),
            keys.games_players(2).replace('2', n),
            keys.games_lobbies(2).replace('2', n),
            keys.log_stream("<lobby>"),
            keys.dead_stream("<lobby>"),
            keys.delivery_tries("<lobby>"),
            keys.delivery_failures("<lobby>"),
        ]);
        names
    }

    /// One declaration per fact: every name built here appears in `docs/redis-keys.md`, in
    /// both layouts.
    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/redis-keys.md");
        let (g, u, lobby) = ("<g>", "<u>", "<lobby>");
        let mut names = shard_names(&Keys::single(), g, u, "<n>");
        names.extend(shard_names(
            &Keys::tagged("{<lobby>:<s>}".into()),
            g,
            u,
            "<n>",
        ));
        names.extend([
            game_events(g),
            SHARD_COUNT.to_string(),
            lobby.to_string(),
            worker_channel(lobby, "<worker id>"),
            log_stream(lobby),
            dead_stream(lobby),
            worker_heartbeats(lobby),
            fanout_heartbeats(lobby),
            Keys::tagged("{<lobby>:<s>}".into()).fanout_lease(lobby),
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

    /// The single layout's names are the original's, byte for byte: the Python tools read them.
    #[test]
    fn the_single_layout_keeps_every_name_of_today() {
        let (g, u) = ("0f8c3a1e-5b2d-4c7e-9a10-2b3c4d5e6f70", "u-1");
        let names = shard_names(&Keys::single(), g, u, "4");
        let today = [
            format!("games:{g}"),
            format!("games:{g}:participants"),
            format!("games:{g}:status"),
            format!("games:{g}:host"),
            format!("games:{g}:order"),
            format!("games:{g}:superheros"),
            format!("games:{g}:logs"),
            format!("games:{g}:created"),
            format!("games:{g}:ready"),
            format!("games:{g}:turns"),
            format!("games:{g}:eliminated"),
            format!("games:{g}:lobby-sockets"),
            format!("games:{g}:aliases"),
            format!("games:{g}:alias-of"),
            format!("games:{g}:etl:done"),
            format!("games:{g}:etl:writer"),
            format!("games:{g}:superheros:{u}"),
            format!("games:{g}:etl:lease"),
            "superheros:loading:<id>".to_string(),
            "superheros".to_string(),
            "users".to_string(),
            "games:participants".to_string(),
            "games:user-tokens".to_string(),
            "games:deadlines".to_string(),
            "games:users:last-use".to_string(),
            "games:users:names".to_string(),
            "games:users:open-lobby".to_string(),
            "games:players:4".to_string(),
            "games:lobbies:4".to_string(),
            "<lobby>:log".to_string(),
            "<lobby>:dead".to_string(),
            "<lobby>:tries".to_string(),
            "<lobby>:failures".to_string(),
        ];
        assert_eq!(names, today);
        let single = Keys::single();
        assert_eq!(
            single.game_hero_field_pattern(g, "health"),
            format!("games:{g}:superheros:*->health")
        );
        assert_eq!(single.game_key_pattern(g), format!("games:{g}:*"));
        assert_eq!(
            single.split_around_game(Keys::game_status),
            ("games:".to_string(), ":status".to_string())
        );
    }

    /// Every name of a tagged shard carries its tag, so a script's keys share one slot, and a
    /// game key is parsed back to its shard and token.
    #[test]
    fn every_tagged_name_carries_the_tag_and_parses_back() {
        let tag = "{lobby:3}";
        let keys = Keys::tagged(tag.into());
        for name in shard_names(&keys, "g", "u", "4") {
            assert!(name.contains(tag), "{name}");
        }
        assert_eq!(keys.game_status("g"), "games:{lobby:3}:g:status");
        assert_eq!(keys.users(), "users:{lobby:3}");
        assert_eq!(keys.log_stream("lobby"), "{lobby:3}:log");
        assert_eq!(
            parse_game_key("games:{lobby:3}:g:status", ":status"),
            Some((keys.clone(), "g"))
        );
        assert_eq!(
            parse_game_key("games:g:status", ":status"),
            Some((Keys::single(), "g"))
        );
        assert_eq!(
            parse_game_key("games:{lobby:3}:users:names", ":status"),
            None
        );
        assert_eq!(
            parse_game_key("games:{lobby:3}:a:b:status", ":status"),
            None
        );
    }

    #[test]
    fn glob_escaping() {
        assert_eq!(escape_glob("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }
}
