//! Shards: how the keys of games and users are spread over a Redis Cluster's slots.
//!
//! A [`Layout`] is either the single layout (one Redis, today's key names, which the original
//! tools read) or S tagged shards: shard `s` has the hash tag `{<lobby>:<s>}` and every key of
//! it carries that tag, so any script of the game touches one slot. A token names its shard,
//! `crc32(token) mod S` ([`Layout::of_token`]), so every role finds a game's or a user's keys
//! from the token alone; tokens are drawn until they fall in the wanted shard
//! ([`Layout::draw_token`]) and stay plain UUIDv4s for the original bots. A user's home shard is
//! that of its name, so login by name finds the same registry every time.
//!
//! Every role on one Redis must use the same layout for the life of the data: the first role
//! that writes stores the shard count in `superhero:shards` ([`Layout::agree`]).

use anyhow::Result;

use crate::config::{ConfigError, Settings};
use crate::pipeline::keys::{self, Keys};
use crate::pipeline::redis_conn::{Conn, Redis};

/// Shards per cluster primary when REDIS_SHARDS is unset: enough that a resharded or grown
/// cluster can move whole shards between primaries.
pub const SHARDS_PER_PRIMARY: u16 = 4;

/// How long new lobbies of one size keep opening in the same shard ([`Layout::lobby_shard`]).
pub const LOBBY_SHARD_MS: u64 = 100;

/// One shard of a [`Layout`], by index from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard(pub u16);

/// How keys are named and spread: see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The lobby channel and the shard count of a tagged layout; None: the single layout.
    tagged: Option<(String, u16)>,
}

/// What a role does with the layout stored in Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agreement {
    /// A role that writes game or user data: stores its layout if none is stored yet.
    Store,
    /// A role that only reads: follows the stored layout, unless REDIS_SHARDS says otherwise.
    Read,
}

impl Layout {
    /// One Redis, today's key names.
    pub fn single() -> Layout {
        Layout { tagged: None }
    }

    /// `count` shards (at least 1) tagged `{<lobby>:<s>}`.
    pub fn tagged(lobby: &str, count: u16) -> Layout {
        Layout {
            tagged: Some((lobby.to_string(), count.max(1))),
        }
    }

    /// The layout the settings ask for: REDIS_SHARDS shards; unset, the single layout on one
    /// Redis or [`SHARDS_PER_PRIMARY`] per primary on a cluster.
    pub async fn from_settings(settings: &Settings, redis: &Redis) -> Result<Layout> {
        let lobby = &settings.worker_channel;
        Ok(match settings.redis_shards {
            Some(count) => Layout::tagged(lobby, count),
            None if redis.is_cluster() => {
                let primaries = redis.primaries().await?.len().max(1) as u16;
                Layout::tagged(lobby, primaries.saturating_mul(SHARDS_PER_PRIMARY))
            }
            None => Layout::single(),
        })
    }

    /// The layout of these settings, agreed with the one stored in Redis (see [`Layout::agree`]).
    pub async fn for_role(
        settings: &Settings,
        redis: &Redis,
        agreement: Agreement,
    ) -> Result<Layout> {
        let mine = Layout::from_settings(settings, redis).await?;
        let reader = match (agreement, settings.redis_shards) {
            (Agreement::Read, None) => Some(settings.worker_channel.as_str()),
            _ => None,
        };
        mine.agree(&mut redis.conn(), agreement, reader).await
    }

    /// Whether this is a tagged layout (keys carry hash tags).
    pub fn is_tagged(&self) -> bool {
        self.tagged.is_some()
    }

    /// The number of shards (1 for the single layout).
    pub fn count(&self) -> u16 {
        self.tagged.as_ref().map_or(1, |(_, count)| *count)
    }

    /// Every shard, from 0.
    pub fn shards(&self) -> impl Iterator<Item = Shard> {
        (0..self.count()).map(Shard)
    }

    /// The shard of a game or user token: crc32 of its text, mod the shard count.
    pub fn of_token(&self, token: &str) -> Shard {
        Shard((crc32fast::hash(token.as_bytes()) % u32::from(self.count())) as u16)
    }

    /// A user's home shard, where its registry lives: the shard of its name.
    pub fn home_of(&self, name: &str) -> Shard {
        self.of_token(name)
    }

    /// The shard a new lobby of `n` players opens in at `now_ms`: one shard per size for
    /// [`LOBBY_SHARD_MS`], then another, so finds at the same moment meet in one shard (where
    /// one script sees every lobby opening) while games still spread over every shard.
    pub fn lobby_shard(&self, n: u8, now_ms: u64) -> Shard {
        let slot = now_ms / LOBBY_SHARD_MS;
        self.of_token(&format!("lobbies:{n}:{slot}"))
    }

    /// A fresh UUIDv4 whose shard is `shard` (S draws on average).
    pub fn draw_token(&self, shard: Shard) -> String {
        loop {
            let token = uuid::Uuid::new_v4().to_string();
            if self.of_token(&token) == shard {
                return token;
            }
        }
    }

    /// The hash tag of `shard`, `{<lobby>:<s>}`; None for the single layout.
    pub fn tag(&self, shard: Shard) -> Option<String> {
        self.tagged
            .as_ref()
            .map(|(lobby, _)| format!("{{{lobby}:{}}}", shard.0))
    }

    /// The key names of `shard`.
    pub fn keys(&self, shard: Shard) -> Keys {
        match self.tag(shard) {
            None => Keys::single(),
            Some(tag) => Keys::tagged(tag),
        }
    }

    /// The key names of the shard of a game or user token.
    pub fn keys_of(&self, token: &str) -> Keys {
        self.keys(self.of_token(token))
    }

    /// The key names of every shard.
    pub fn all_keys(&self) -> Vec<Keys> {
        self.shards().map(|s| self.keys(s)).collect()
    }

    /// This layout as `superhero:shards` holds it: the shard count; None for the single
    /// layout, which stores nothing (a single Redis keeps exactly the original's keys).
    fn stored_form(&self) -> Option<String> {
        self.tagged.as_ref().map(|(_, count)| count.to_string())
    }

    /// Agrees on the layout with the roles before: [`Agreement::Store`] stores this layout's
    /// count in `superhero:shards` unless one is stored (SET NX GET) and refuses a different
    /// one; [`Agreement::Read`] refuses a different one too, unless `follow` names the lobby
    /// of a reader whose REDIS_SHARDS is unset: that reader follows the stored count. The
    /// single layout stores nothing: it refuses a stored count when it would write, and a
    /// tagged layout refuses a Redis holding the single layout's hero collection. A refusal is a [`ConfigError`] naming REDIS_SHARDS and both
    /// values (exit 2).
    pub async fn agree(
        &self,
        conn: &mut Conn,
        agreement: Agreement,
        follow: Option<&str>,
    ) -> Result<Layout> {
        let stored: Option<String> = match (agreement, self.stored_form()) {
            (Agreement::Store, Some(mine)) => {
                let single_data: bool = redis::cmd("EXISTS")
                    .arg(Keys::single().superheros())
                    .query_async(conn)
                    .await?;
                if single_data {
                    return Err(self.mismatch("none (the single layout: REDIS_SHARDS unset)"));
                }
                redis::cmd("SET")
                    .arg(keys::SHARD_COUNT)
                    .arg(&mine)
                    .arg("NX")
                    .arg("GET")
                    .query_async(conn)
                    .await?
            }
            _ => {
                redis::cmd("GET")
                    .arg(keys::SHARD_COUNT)
                    .query_async(conn)
                    .await?
            }
        };
        self.judge(stored.as_deref(), follow)
    }

    /// The layout a role goes on with, given what `superhero:shards` held before it.
    fn judge(&self, stored: Option<&str>, follow: Option<&str>) -> Result<Layout> {
        let Some(stored) = stored else {
            return Ok(self.clone());
        };
        if self.stored_form().as_deref() == Some(stored) {
            return Ok(self.clone());
        }
        let count = stored
            .parse::<u16>()
            .ok()
            .filter(|n| (1..=crate::config::MAX_SHARDS).contains(n));
        match (follow, count) {
            (Some(lobby), Some(count)) => Ok(Layout::tagged(lobby, count)),
            _ => Err(self.mismatch(stored)),
        }
    }

    fn mismatch(&self, stored: &str) -> anyhow::Error {
        let mine = match &self.tagged {
            Some((_, count)) => format!("{count} shards here"),
            None => "unset here (the single layout, on one Redis)".to_string(),
        };
        ConfigError(format!(
            "REDIS_SHARDS: {mine}, but the data in this Redis was laid out with {stored} \
             ({}): every role on one Redis must use the same REDIS_SHARDS (`clean --all` \
             starts over)",
            keys::SHARD_COUNT
        ))
        .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_falls_in_its_crc32_shard() {
        let layout = Layout::tagged("lobby", 8);
        let token = "0f8c3a1e-5b2d-4c7e-9a10-2b3c4d5e6f70";
        let expected = crc32fast::hash(token.as_bytes()) % 8;
        assert_eq!(layout.of_token(token), Shard(expected as u16));
        assert_eq!(Layout::single().of_token(token), Shard(0));
        assert_eq!(Layout::tagged("lobby", 1).of_token(token), Shard(0));
    }

    #[test]
    fn drawn_tokens_are_uuids_of_the_wanted_shard() {
        let layout = Layout::tagged("lobby", 16);
        for s in layout.shards() {
            let token = layout.draw_token(s);
            assert_eq!(layout.of_token(&token), s);
            let parsed = uuid::Uuid::parse_str(&token).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(parsed.to_string(), token);
        }
    }

    #[test]
    fn each_shard_has_its_own_tag_and_the_single_layout_none() {
        let layout = Layout::tagged("redis.lib.server.lobby", 4);
        assert_eq!(
            layout.tag(Shard(2)).as_deref(),
            Some("{redis.lib.server.lobby:2}")
        );
        assert_eq!(
            layout.keys(Shard(2)).game_status("g"),
            "games:{redis.lib.server.lobby:2}:g:status"
        );
        assert_eq!(layout.all_keys().len(), 4);
        assert_eq!(Layout::single().tag(Shard(0)), None);
        assert_eq!(
            Layout::single().keys_of("g").game_status("g"),
            "games:g:status"
        );
        let token = layout.draw_token(Shard(3));
        assert_eq!(layout.keys_of(&token), layout.keys(Shard(3)));
    }

    fn refusal(result: Result<Layout>) -> String {
        let error = result.unwrap_err();
        assert!(error.downcast_ref::<ConfigError>().is_some(), "{error:#}");
        error.to_string()
    }

    #[test]
    fn roles_agree_on_the_stored_count_or_refuse_naming_both() {
        let four = Layout::tagged("l", 4);
        let eight = Layout::tagged("l", 8);
        // Nothing stored yet: each role goes on with its own.
        assert_eq!(four.judge(None, None).unwrap(), four);
        assert_eq!(four.judge(Some("4"), None).unwrap(), four);
        let text = refusal(eight.judge(Some("4"), None));
        assert!(text.contains("REDIS_SHARDS") && text.contains('8') && text.contains('4'));
        // A reader without REDIS_SHARDS follows the stored count.
        assert_eq!(eight.judge(Some("4"), Some("l")).unwrap(), four);
        let single = Layout::single();
        assert_eq!(single.judge(Some("4"), Some("l")).unwrap(), four);
        // The single layout stores nothing and refuses a tagged Redis when it would write.
        assert_eq!(single.judge(None, None).unwrap(), single);
        let text = refusal(single.judge(Some("4"), None));
        assert!(text.contains("REDIS_SHARDS") && text.contains("unset") && text.contains('4'));
        refusal(four.judge(Some("garbage"), Some("l")));
    }
}
