//! Keeping a service's [`RevokedSessions`] in step with Auth, across processes.
//!
//! Every service refuses the access tokens of revoked sessions from memory, without a round trip
//! (see [`crate::token`]). When the services share a PostgreSQL database, Auth's store announces
//! each revocation on the channel [`CHANNEL`] as its transaction commits, whichever instance
//! revoked the session; [`follow`] listens on that channel from every process, so a logout on one
//! instance is refused by all of them at once.
//!
//! Notices sent while a listener is not connected are lost, so the full list is read from a
//! [`RevocationSource`] (Auth itself in process, or its `/internal/v1/sessions/revoked` route)
//! after every (re)connection — listening first, then reading, so that nothing falls in between.
//! Until that first read has succeeded the follower is not [`ready`](Follower::is_ready), and the
//! service's `/readyz` says so: a load balancer sends it no traffic while it could still accept a
//! logged-out token.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::clients::RevocationSource;
use crate::clock::SharedClock;
use crate::token::RevokedSessions;

/// The PostgreSQL notification channel on which Auth announces a revoked session (its id as the
/// payload).
pub const CHANNEL: &str = "session_revoked";

/// Follows revocations for one process. Cheap to clone.
#[derive(Clone)]
pub struct Follower {
    source: Arc<dyn RevocationSource>,
    revoked: RevokedSessions,
    clock: SharedClock,
    /// The access-token lifetime: how long a session announced on the channel must be refused.
    access_ttl: Duration,
    loaded: Arc<AtomicBool>,
}

impl Follower {
    pub fn new(
        source: Arc<dyn RevocationSource>,
        revoked: RevokedSessions,
        clock: SharedClock,
        access_ttl: Duration,
    ) -> Self {
        Self {
            source,
            revoked,
            clock,
            access_ttl,
            loaded: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the full list has been read at least once.
    pub fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Reads the full list from the source and adds it to the in-memory one.
    pub async fn load(&self) -> Result<usize, crate::clients::ClientError> {
        let sessions = self.source.revoked_sessions().await?;
        let now = self.clock.now().unix_timestamp();
        for session in &sessions {
            self.revoked
                .revoke(session.session_id, session.forget_after, now);
        }
        self.loaded.store(true, Ordering::Release);
        Ok(sessions.len())
    }

    fn remember(&self, session_id: Uuid) {
        let now = self.clock.now().unix_timestamp();
        self.revoked.revoke_now(session_id, now, self.access_ttl);
    }

    /// Listens on [`CHANNEL`] until `stop` resolves, reading the full list after every
    /// (re)connection. Connection failures are retried every second; they are logged, never fatal.
    pub async fn follow(self, pool: sqlx::PgPool, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let pause = |delay| tokio::time::sleep(Duration::from_millis(delay));
        'connect: loop {
            let connected = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = &mut stop => return,
                connected = connected => match connected {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for revoked sessions; retrying");
                        tokio::select! { () = &mut stop => return, () = pause(1000) => {} }
                        continue 'connect;
                    }
                },
            };
            // Listening: now the full list, until it is read.
            loop {
                let loaded = tokio::select! {
                    () = &mut stop => return,
                    loaded = self.load() => loaded,
                };
                match loaded {
                    Ok(count) => {
                        tracing::debug!(count, "revoked sessions loaded");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the revoked sessions; retrying");
                        tokio::select! { () = &mut stop => return, () = pause(1000) => {} }
                    }
                }
            }
            loop {
                let notice = tokio::select! {
                    () = &mut stop => return,
                    notice = listener.try_recv() => notice,
                };
                match notice {
                    Ok(Some(notice)) => match notice.payload().parse::<Uuid>() {
                        Ok(session_id) => self.remember(session_id),
                        Err(_) => {
                            tracing::warn!(payload = notice.payload(), "odd revocation notice")
                        }
                    },
                    // The connection was lost and re-established: notices may have been missed.
                    Ok(None) => continue 'connect,
                    Err(error) => {
                        tracing::warn!(%error, "revocation listener failed");
                        tokio::select! { () = &mut stop => return, () = pause(200) => {} }
                    }
                }
            }
        }
    }
}
