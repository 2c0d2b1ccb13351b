//! How the demo shows its progress: plain lines, or three progress bars on stderr (also when
//! stderr is not a terminal, for tests: [`Display::Forced`]).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::logging::Console;

use super::summary::OnDisk;

/// How the demo shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Plain lines only: not a terminal, `--quiet`, or `--progress never`.
    Plain,
    /// Progress bars on stderr, a terminal.
    Terminal,
    /// Progress bars on stderr although it is not a terminal (`--progress always`, for tests).
    Forced,
}

impl Display {
    /// `Some(true)`: bars always; `Some(false)`: never; `None`: when stderr is a terminal.
    pub fn choose(bars: Option<bool>) -> Self {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        match (bars, terminal) {
            (Some(false), _) | (None, false) => Display::Plain,
            (_, true) => Display::Terminal,
            (Some(true), false) => Display::Forced,
        }
    }

    pub(super) fn shows_bars(self) -> bool {
        self != Display::Plain
    }
}

/// Three bars: games played (of the expected number), games processed and files written (of
/// what the games played so far call for). Hidden in [`Display::Plain`].
pub(super) struct Progress {
    _multi: MultiProgress,
    played: ProgressBar,
    processed: ProgressBar,
    files: ProgressBar,
    console: Option<Console>,
    shown: bool,
}

impl Progress {
    pub(super) fn new(display: Display, expected_games: u64, console: Option<&Console>) -> Self {
        let target = match display {
            Display::Plain => ProgressDrawTarget::hidden(),
            Display::Terminal => ProgressDrawTarget::stderr(),
            Display::Forced => ProgressDrawTarget::term_like_with_hz(Box::new(ForcedStderr), 10),
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{prefix:>15} [{bar:30}] {pos:>4}/{len:<4} {msg:7} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = |prefix: &'static str, unit: &'static str, len: u64| {
            let bar = multi.add(
                ProgressBar::new(len)
                    .with_style(style.clone())
                    .with_prefix(prefix)
                    .with_message(unit),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        };
        let played = bar("games played", "games", expected_games);
        let processed = bar("games processed", "games", 0);
        let files = bar("files written", "files", 0);
        let console = console.filter(|_| display.shows_bars()).cloned();
        if let Some(console) = &console {
            console.above(&multi);
        }
        Progress {
            _multi: multi,
            played,
            processed,
            files,
            console,
            shown: display.shows_bars(),
        }
    }

    /// `n` games played so far; what is to be processed grows with them.
    pub(super) fn played(&self, n: usize) {
        let n = n as u64;
        if n > self.played.length().unwrap_or(0) {
            self.played.set_length(n);
        }
        self.played.set_position(n);
        self.processed.set_length(n);
        self.files.set_length(2 * n);
    }

    /// Every bot is done: `n` games were played in all.
    pub(super) fn all_played(&self, n: usize) {
        self.played(n);
        self.played.set_length(n as u64);
    }

    pub(super) fn on_disk(&self, done: OnDisk) {
        self.processed.set_position(done.games as u64);
        self.files.set_position(done.files as u64);
    }

    pub(super) fn finish(&self) {
        for bar in [&self.played, &self.processed, &self.files] {
            bar.finish();
        }
        // The finished bars stay on screen above the summary; later lines go below them (the
        // cursor is still at the end of the last bar).
        if self.shown {
            eprintln!();
        }
        if let Some(console) = &self.console {
            console.plain();
        }
    }
}

/// stderr as a terminal whether or not it is one (`--progress always`): indicatif's own stderr
/// target draws nothing off a terminal.
#[derive(Debug)]
pub(super) struct ForcedStderr;

impl ForcedStderr {
    pub(super) fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().write_all(s.as_bytes())
    }

    pub(super) fn moved(&self, n: usize, code: char) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.put(&format!("\x1b[{n}{code}"))
    }
}

impl TermLike for ForcedStderr {
    fn width(&self) -> u16 {
        100
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'A')
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'B')
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'C')
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.moved(n, 'D')
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
