//! A game server running inside the test process, through `server::run` (the function the CLI
//! runs), on a private redis-server with the heroes loaded.

use std::time::Duration;

use superhero::config::Settings;
use superhero::pipeline::redis_conn::Redis;

use super::roles::Task;
use super::TestRedis;

/// A game server running in this process.
pub struct Server {
    pub port: u16,
    task: Task<()>,
}

impl Server {
    pub async fn start(settings: &Settings) -> Server {
        let redis = Redis::connect(&settings.redis).await.expect("redis");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let settings = settings.clone();
        let task = Task::spawn(|shutdown| async move {
            superhero::roles::server::run(&settings, redis, listener, shutdown).await
        });
        Server { port, task }
    }

    pub async fn stop(self) {
        self.task.stop_within(Duration::from_secs(15)).await;
    }
}

/// Settings for the tests: a private Redis, loaded heroes, quick timeouts (`vars` override).
pub async fn prepared(redis: &TestRedis, vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("TURN_TIMEOUT", "3"),
        ("LOBBY_TIMEOUT", "5"),
        ("CLIENT_SLEEP", "0.2"),
    ];
    all.extend_from_slice(vars);
    let settings = redis.settings_with(&all);
    let conn = Redis::connect(&settings.redis).await.expect("redis");
    superhero::ops::build_db::run(&conn, &superhero::pipeline::shard::Layout::single(), None)
        .await
        .expect("build-db");
    settings
}
