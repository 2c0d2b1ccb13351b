//! Human-readable log lines at LOG_LEVEL: on stderr for the roles, and for `demo` split between
//! the terminal (warnings and errors, printed above its progress bars) and a log file (all of it).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, RwLock};

use indicatif::MultiProgress;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the global subscriber; a second call (tests, `demo`) is a no-op.
pub fn init(level: tracing::Level) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
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
    let level = LevelFilter::from_level(level);
    let console_level = if verbose {
        level
    } else {
        level.min(LevelFilter::WARN)
    };
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(console.clone())
        .with_ansi(ansi)
        .with_target(false)
        .with_filter(console_level);
    let file = log_file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(Mutex::new(f))
            .with_ansi(false)
            .with_target(false)
            .with_filter(level)
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
