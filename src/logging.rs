//! Human-readable log lines: on stderr for the roles, and for `demo` split between the terminal
//! (warnings and errors, printed above its progress bars) and a log file (all of it).
//!
//! Which lines: LOG_LEVEL sets this crate's level; the libraries under it (redis, tungstenite,
//! hyper, …) stay at WARN, or stricter when LOG_LEVEL is. `RUST_LOG`, when set, replaces both
//! with its own `EnvFilter` directives (`RUST_LOG=debug`, `RUST_LOG=superhero::roles::worker=trace`).
//!
//! Each role instance runs inside a span (`server`, `fanout{id=…}`, `worker{id=…}`,
//! `player{user=…}`) and games inside a `game{game=…}` span where one is handled, so the lines of
//! four workers in one `demo` can be told apart.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, RwLock};

use indicatif::MultiProgress;
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The variable whose `EnvFilter` directives, when set, replace LOG_LEVEL.
pub const RUST_LOG: &str = "RUST_LOG";

/// The filter for LOG_LEVEL `level`: RUST_LOG's directives when it is set (and valid), else
/// `level` for this crate and at most WARN for everything else.
pub fn filter(level: tracing::Level) -> EnvFilter {
    if let Some(directives) = std::env::var(RUST_LOG)
        .ok()
        .filter(|d| !d.trim().is_empty())
    {
        match EnvFilter::builder().parse(&directives) {
            Ok(filter) => return filter,
            Err(e) => eprintln!("ignoring {RUST_LOG}={directives:?} ({e}); using LOG_LEVEL"),
        }
    }
    level_filter(level)
}

/// `level` for this crate, the stricter of `level` and WARN for its dependencies, and of ERROR
/// for the redis crate: its cluster client warns at every retry to a node that is down, where
/// the roles' own outage lines say it once.
fn level_filter(level: tracing::Level) -> EnvFilter {
    let ours = LevelFilter::from_level(level);
    let others = ours.min(LevelFilter::WARN);
    let redis = ours.min(LevelFilter::ERROR);
    EnvFilter::builder().parse_lossy(format!(
        "{others},redis={redis},{}={ours}",
        env!("CARGO_CRATE_NAME")
    ))
}

/// Installs the global subscriber; a second call (tests, `demo`) is a no-op.
pub fn init(level: tracing::Level) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_span_events(FmtSpan::NONE)
        .try_init();
}

/// Installs `demo`'s subscriber: every line at `level` goes to `log_file`; the terminal gets
/// warnings and errors only, or every line with `verbose`. `ansi` colours the terminal's lines
/// (only when they go to a terminal). Returns the terminal's writer, to put progress bars under.
pub fn init_demo(
    level: tracing::Level,
    verbose: bool,
    ansi: bool,
    log_file: Option<std::fs::File>,
) -> Console {
    let console = Console::default();
    let console_cap = if verbose {
        LevelFilter::TRACE
    } else {
        LevelFilter::WARN
    };
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(console.clone())
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(filter(level).and(console_cap));
    let file = log_file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(Mutex::new(f))
            .with_ansi(false)
            .with_target(false)
            .with_filter(filter(level))
    });
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(file)
        .try_init();
    console
}

/// The terminal side of `demo`'s log: stderr, or above the progress bars while they are shown
/// (a plain write would tear them).
#[derive(Clone, Default)]
pub struct Console {
    bars: Arc<RwLock<Option<MultiProgress>>>,
}

impl Console {
    /// Prints lines above these bars from now on.
    pub fn above(&self, bars: &MultiProgress) {
        *self.bars.write().unwrap_or_else(|p| p.into_inner()) = Some(bars.clone());
    }

    /// The bars are gone: print on stderr again.
    pub fn plain(&self) {
        *self.bars.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn print(&self, text: &str) {
        let bars = self.bars.read().unwrap_or_else(|p| p.into_inner());
        match bars.as_ref() {
            Some(bars) if !bars.is_hidden() => {
                let _ = bars.println(text.trim_end_matches('\n'));
            }
            _ => {
                let _ = std::io::stderr().write_all(text.as_bytes());
            }
        }
    }
}

/// One log line being formatted; printed whole when dropped.
pub struct ConsoleLine {
    console: Console,
    text: Vec<u8>,
}

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        if !self.text.is_empty() {
            self.console.print(&String::from_utf8_lossy(&self.text));
        }
    }
}

impl<'a> MakeWriter<'a> for Console {
    type Writer = ConsoleLine;

    fn make_writer(&'a self) -> ConsoleLine {
        ConsoleLine {
            console: self.clone(),
            text: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_sets_this_crate_only() {
        let f = level_filter(tracing::Level::DEBUG).to_string();
        assert!(f.contains("superhero=debug"), "{f}");
        assert!(f.contains("warn"), "{f}");
        assert!(f.contains("redis=error"), "{f}");
        // A stricter LOG_LEVEL applies to the dependencies too.
        let f = level_filter(tracing::Level::ERROR).to_string();
        assert!(f.contains("superhero=error"), "{f}");
        assert!(!f.contains("warn"), "{f}");
    }
}
