//! A private `redis-server` child process: free port, temporary directory, no persistence.
//!
//! `demo` and `bench` start one when no Redis is reachable, and the tests start one each so they
//! can run in parallel, kill and restart Redis, and never see each other's keys or channels.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A running private redis-server, killed when dropped.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether `redis-server` can be started from PATH.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl PrivateRedis {
    /// Starts a server on a free port with extra arguments (e.g. `--requirepass`).
    pub fn start(extra_args: &[&str]) -> Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            let mut redis = PrivateRedis {
                child: None,
                port: free_port()?,
                dir: tempfile::tempdir().context("cannot create a temporary directory")?,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            };
            match redis.spawn() {
                Ok(()) => return Ok(redis),
                // Another process may have taken the port between our probe and the bind.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("unknown error")))
            .context("could not start a private redis-server")
    }

    fn spawn(&mut self) -> Result<()> {
        // The server's own log says when *it* listens: a connect alone could reach another
        // test's server that took the port first (ours then exits on the failed bind).
        let log = self.dir.path().join("redis-server.log");
        let seen = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server (is it installed?)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    bail!("redis-server exited at start ({status})");
                }
            }
            let ours = std::fs::read(&log)
                .map(|text| {
                    let new = &text[(seen as usize).min(text.len())..];
                    String::from_utf8_lossy(new).contains("Ready to accept connections")
                })
                .unwrap_or(false);
            if ours && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        bail!(
            "redis-server did not listen on port {} within 10s",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server runs (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL): connections drop and every key is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, retrying while the port is released.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
