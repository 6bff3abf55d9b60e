//! The signal that starts a graceful shutdown.
//!
//! [`signal`] resolves on Ctrl-C or SIGTERM. Whoever owns the server turns it into a
//! [`tokio_util::sync::CancellationToken`] that every background worker watches, and waits on a
//! [`tokio_util::task::TaskTracker`] so that the process exits only when every task has finished
//! its current unit of work.

use std::future::Future;

/// Installs the SIGINT/SIGTERM handlers at once and returns a future that resolves when the
/// process is asked to stop. The handlers are installed before the future is polled, so a signal
/// that arrives while the server is still starting is not lost (and does not kill the process
/// with the default action). Must be called inside a tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => tracing::info!("Ctrl-C received, shutting down"),
                        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for shutdown signals");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async move {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received, shutting down");
    }
}
