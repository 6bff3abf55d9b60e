//! Copies the write-ahead log back into the database file on a thread of its own.
//!
//! In WAL mode every commit appends pages to the log, and something must copy them into the
//! database file from time to time (a checkpoint) or the log grows without end. By default
//! SQLite makes the committing connection do it, inside `COMMIT`, whenever the log passes 1 000
//! pages — on the booking writer's thread, where it cost about an eighth of the writer's time and
//! held every request of the next batch waiting. Here a second connection does it instead:
//! the writer [`Checkpointer::poke`]s it after each commit, and it runs a `PASSIVE` checkpoint
//! at most every [`INTERVAL`] while commits keep coming. A passive checkpoint never waits for
//! the writer or the readers; the log is rewound from its start by the writer's next transaction
//! once everything in it has been copied. Durability does not depend on any of this: a commit is
//! on disk once its log pages are synced.
//!
//! Should the checkpointer fall behind (or fail), the writer's connection keeps a backstop
//! ([`BACKSTOP_PAGES`]): past that many pages in the log it checkpoints on its own as before.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

/// How often, at most, the log is copied back while commits keep coming.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// The writer's own automatic checkpoint, for when the checkpointer does not keep up: about
/// 64 MiB of log with 4 KiB pages.
pub const BACKSTOP_PAGES: u32 = 16_384;

#[derive(Default)]
struct State {
    /// Commits since the last checkpoint.
    dirty: bool,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The writer's handle on the checkpoint thread; dropping it stops the thread after a last
/// checkpoint.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the checkpoint thread on its own connection to the database at `path`.
    pub fn start(path: &Path) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("booking-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || run(&path, &shared)
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Tells the checkpointer that a transaction was committed.
    pub fn poke(&self) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !state.dirty {
            state.dirty = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stopped = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(path: &Path, shared: &Shared) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, "cannot open the checkpoint connection; the writer checkpoints on its own");
            return;
        }
    };
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.dirty && !state.stopped {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stopped {
                break;
            }
            // Let a few more commits land, unless the writer is stopping.
            let (waited, _) = shared
                .wake
                .wait_timeout_while(state, INTERVAL, |state| !state.stopped)
                .unwrap_or_else(PoisonError::into_inner);
            state = waited;
            state.dirty = false;
        }
        checkpoint(&conn);
    }
    checkpoint(&conn);
}

/// One passive checkpoint: copies what it can without waiting for anyone.
fn checkpoint(conn: &Connection) {
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
        ))
    });
    match result {
        Ok((busy, log, copied)) => {
            tracing::trace!(busy, log, copied, "checkpoint");
        }
        Err(error) => tracing::warn!(%error, "checkpoint failed; the writer's backstop remains"),
    }
}
