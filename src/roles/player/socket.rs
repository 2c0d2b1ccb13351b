//! The bot's sockets: one per route, opened once and reused, sending a burst of requests and
//! reading one reply to each; a socket the server closed before replying is reopened and the
//! requests sent again.

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::roles::server::protocol::Route;

pub(super) type ClientSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) async fn connect(url: &str) -> Result<ClientSocket> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(ws)
}

pub(super) async fn send(ws: &mut ClientSocket, body: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(body)?;
    ws.send(Message::text(text))
        .await
        .context("the server closed the connection")
}

/// One route's socket, kept open between requests.
pub(super) struct RouteSocket {
    pub(super) url: String,
    pub(super) ws: ClientSocket,
}

/// How a round of requests failed.
pub(super) enum AskError {
    /// The socket was gone before the first reply: the server read none of the requests.
    NoReply(anyhow::Error),
    /// Some replies came, then the socket failed.
    Broken(anyhow::Error),
}

impl RouteSocket {
    pub(super) async fn open(base: &str, route: Route) -> Result<Self> {
        let url = format!("{base}{}", route.path());
        let ws = connect(&url).await?;
        Ok(RouteSocket { url, ws })
    }

    /// Sends `requests` in one burst and reads one reply to each. The server closes a socket
    /// only while it waits for a request, so a socket gone before the first reply means none
    /// was read: they are sent once more, on a new socket.
    pub(super) async fn ask(&mut self, requests: &[String]) -> Result<Vec<Value>> {
        match self.try_ask(requests).await {
            Ok(replies) => Ok(replies),
            Err(AskError::Broken(e)) => Err(e),
            Err(AskError::NoReply(e)) => {
                tracing::debug!("{}: closed before replying ({e:#}); reopening", self.url);
                self.ws = connect(&self.url).await?;
                match self.try_ask(requests).await {
                    Ok(replies) => Ok(replies),
                    Err(AskError::NoReply(e) | AskError::Broken(e)) => Err(e),
                }
            }
        }
    }

    /// [`RouteSocket::ask`] for one request.
    pub(super) async fn ask_one(&mut self, request: &impl Serialize) -> Result<Value> {
        let text = serde_json::to_string(request)?;
        let mut replies = self.ask(&[text]).await?;
        replies.pop().context("no reply")
    }

    pub(super) async fn try_ask(&mut self, requests: &[String]) -> Result<Vec<Value>, AskError> {
        for text in requests {
            self.ws
                .send(Message::text(text.as_str()))
                .await
                .context("the server closed the connection")
                .map_err(AskError::NoReply)?;
        }
        let mut replies = Vec::with_capacity(requests.len());
        for _ in requests {
            match receive(&mut self.ws).await {
                Ok(reply) => replies.push(reply),
                Err(e) if replies.is_empty() => return Err(AskError::NoReply(e)),
                Err(e) => return Err(AskError::Broken(e)),
            }
        }
        Ok(replies)
    }
}

/// The next JSON message on the socket.
pub(super) async fn receive(ws: &mut ClientSocket) -> Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).context("server sent invalid JSON")
            }
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the connection"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("connection lost"),
        }
    }
}

/// Reads a reply of type `T`, or fails with the STATUS reason the server gave instead.
pub(super) fn typed<T: DeserializeOwned>(reply: Value) -> Result<T> {
    match serde_json::from_value::<T>(reply.clone()) {
        Ok(t) => Ok(t),
        Err(_) => match reply.get("STATUS").and_then(Value::as_str) {
            Some(reason) => bail!("server refused: {reason}"),
            None => bail!("unexpected reply: {reply}"),
        },
    }
}
