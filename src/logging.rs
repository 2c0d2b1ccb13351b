//! Human-readable log lines on stderr at LOG_LEVEL.

use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber; a second call (tests, `demo`) is a no-op.
pub fn init(level: tracing::Level) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_span_events(FmtSpan::NONE)
        .try_init();
}
