//! Shutdown: one trigger, any number of cheap listeners.
//!
//! Every role's entry point takes a [`Shutdown`]; the CLI wires it to SIGINT/SIGTERM, while tests,
//! `demo` and benchmarks fire it themselves through the [`ShutdownTrigger`].

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] cloned from its pair.
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

/// A listener: `recv().await` completes once shutdown has been fired.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A new trigger and its listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl Shutdown {
    /// Completes when shutdown is fired (or the trigger is dropped).
    pub async fn recv(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|fired| *fired).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// A listener that fires on SIGINT (Ctrl-C) or SIGTERM.
    pub fn on_signals() -> Shutdown {
        let (trigger, shutdown) = channel();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing in-flight work");
            trigger.fire();
            // A second signal means "now": do not make the user wait for a stuck task.
            wait_for_signal().await;
            tracing::warn!("second signal: exiting at once");
            std::process::exit(130);
        });
        shutdown
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
