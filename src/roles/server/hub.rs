//! The hub: routes game events heard on this process's one pattern subscription to the lobby
//! sockets of that game connected here.
//!
//! Lobby handlers register before they change any game state, so an event published after the
//! change always finds them. After the subscription was re-established (Redis outage) every
//! handler is told to resynchronise from Redis, since events published meanwhile were missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::game::GameEvent;
use crate::pipeline::keys;

/// What a lobby handler hears from the hub.
#[derive(Clone, Debug)]
pub enum HubEvent {
    Game(GameEvent),
    /// Events may have been missed: re-read the game's state.
    Resync,
}

type Listeners = Vec<(u64, mpsc::UnboundedSender<HubEvent>)>;

#[derive(Default)]
pub struct Hub {
    games: Mutex<HashMap<String, Listeners>>,
    next_id: AtomicU64,
}

impl Hub {
    /// Starts delivering game `g`'s events; returns the id to unregister with.
    pub fn register(&self, g: &str) -> (u64, mpsc::UnboundedReceiver<HubEvent>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut games = self.games.lock().unwrap_or_else(|p| p.into_inner());
        games.entry(g.to_string()).or_default().push((id, tx));
        (id, rx)
    }

    pub fn unregister(&self, g: &str, id: u64) {
        let mut games = self.games.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(listeners) = games.get_mut(g) {
            listeners.retain(|(i, _)| *i != id);
            if listeners.is_empty() {
                games.remove(g);
            }
        }
    }

    /// Hands a message of a `games:<g>:events` channel to game g's local listeners.
    pub fn dispatch(&self, channel: &str, payload: &[u8]) {
        let Some(g) = keys::game_of_events_channel(channel) else {
            return;
        };
        let games = self.games.lock().unwrap_or_else(|p| p.into_inner());
        let Some(listeners) = games.get(g) else {
            return;
        };
        match serde_json::from_slice::<GameEvent>(payload) {
            Ok(event) => {
                for (_, tx) in listeners {
                    let _ = tx.send(HubEvent::Game(event.clone()));
                }
            }
            Err(e) => tracing::warn!("ignoring a malformed event on {channel}: {e}"),
        }
    }

    pub fn resync_all(&self) {
        let games = self.games.lock().unwrap_or_else(|p| p.into_inner());
        for (_, tx) in games.values().flatten() {
            let _ = tx.send(HubEvent::Resync);
        }
    }
}
