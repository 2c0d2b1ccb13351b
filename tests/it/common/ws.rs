//! A hand-driven WebSocket player for tests: connect, ask, read pushes.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(port: u16, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}{path}"))
        .await
        .expect("connect to the test server");
    ws
}

/// The next JSON text frame within `within`, or None (closed, timed out).
pub async fn next_json(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

pub async fn send(ws: &mut Ws, body: &Value) {
    ws.send(Message::text(body.to_string()))
        .await
        .expect("send");
}

pub async fn ask(ws: &mut Ws, body: Value) -> Value {
    send(ws, &body).await;
    next_json(ws, Duration::from_secs(10))
        .await
        .expect("a reply")
}

/// Logs `name` in; its user token.
pub async fn login(port: u16, name: &str) -> String {
    let mut ws = connect(port, "/api/v1/login").await;
    let reply = ask(&mut ws, json!({"PAYLOAD": {"USER": name}})).await;
    reply["PAYLOAD"]["USER_TOKEN"]
        .as_str()
        .expect("a user token")
        .to_string()
}

/// Finds a game of `n` for `user`; its game token.
pub async fn find(port: u16, user: &str, n: u8) -> String {
    let mut ws = connect(port, "/api/v1/game/find").await;
    let reply = ask(
        &mut ws,
        json!({"PAYLOAD": {"USER_TOKEN": user, "PARTICIPANTS": n}}),
    )
    .await;
    assert_eq!(reply["STATUS"]["JOINED"], "SUCCESS", "{reply}");
    reply["PAYLOAD"]["GAME_TOKEN"]
        .as_str()
        .expect("a game token")
        .to_string()
}

/// Opens `user`'s lobby socket for `game` (the registration is sent; pushes follow on it).
pub async fn open_lobby(port: u16, game: &str, user: &str) -> Ws {
    let mut ws = connect(port, "/api/v1/game/lobby").await;
    send(
        &mut ws,
        &json!({"PAYLOAD": {"GAME_TOKEN": game, "USER_TOKEN": user}}),
    )
    .await;
    ws
}
