//! The signal that starts a graceful shutdown.
//!
//! [`signal`] resolves on Ctrl-C or SIGTERM. Whoever owns the server turns it into a
//! [`tokio_util::sync::CancellationToken`] that every background worker watches, and waits on a
//! [`tokio_util::task::TaskTracker`] so that the process exits only when every task has finished
//! its current unit of work.

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM on Unix).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
