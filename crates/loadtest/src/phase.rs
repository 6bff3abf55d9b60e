//! The measured phase: `--concurrency` workers, each with its own connection, all connected
//! before the phase starts (so the start is the signal), each recording its own figures; and
//! the `GET /healthz` baseline measured the same way (`--baseline`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::client::{Answer, Call, Conn, Target};
use crate::report::{Live, PhaseStats, Progress, Recorder};

/// Stops a phase: at a deadline, after a number of requests, whichever comes first.
pub struct Budget {
    deadline: Option<Instant>,
    left: Option<AtomicU64>,
}

impl Budget {
    pub fn new(duration: Option<Duration>, requests: Option<u64>) -> Self {
        Self {
            deadline: duration.map(|duration| Instant::now() + duration),
            left: requests.map(AtomicU64::new),
        }
    }

    /// Takes one request from the budget; false once it is spent.
    pub fn take(&self) -> bool {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return false;
        }
        match &self.left {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// One load-generating worker: its connection, its recorder, the shared progress counters.
pub struct Worker {
    conn: Conn,
    recorder: Recorder,
    live: Arc<Live>,
}

impl Worker {
    /// Sends `call`, timing and counting the answer.
    pub async fn call(&mut self, call: &Call, want_id: bool) -> Answer {
        let started = Instant::now();
        let answer = self.conn.send(call, want_id).await;
        self.recorder.record(&answer, started.elapsed());
        self.live.count(&answer);
        answer
    }

    /// Like [`Worker::call`], and also hands back the body of the answer (see
    /// [`Conn::send_keeping_body`]).
    pub async fn call_keeping_body(&mut self, call: &Call) -> (Answer, Option<Bytes>) {
        let started = Instant::now();
        let (answer, body) = self.conn.send_keeping_body(call).await;
        self.recorder.record(&answer, started.elapsed());
        self.live.count(&answer);
        (answer, body)
    }
}

/// Everything a scenario needs besides its arguments.
pub struct Ctx {
    pub target: Arc<Target>,
    pub concurrency: usize,
    pub show_progress: bool,
}

impl Ctx {
    /// Runs one measured phase: `states` (one per worker) go to `concurrency` workers running
    /// `body`; they come back, with the merged figures, when every worker has finished.
    pub async fn phase<S, F, Fut>(
        &self,
        name: &str,
        total: Option<u64>,
        states: Vec<S>,
        body: F,
    ) -> anyhow::Result<(PhaseStats, Vec<S>)>
    where
        S: Send + 'static,
        F: Fn(Worker, S) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = (Worker, S)> + Send + 'static,
    {
        let live = Arc::new(Live::default());
        let mut workers = Vec::with_capacity(states.len());
        for _ in 0..states.len() {
            let mut conn = Conn::new(self.target.clone());
            // A failed connect is not fatal here: the first request retries and counts it.
            let _ = conn.connect().await;
            workers.push(Worker {
                conn,
                recorder: Recorder::new(),
                live: live.clone(),
            });
        }
        let progress = Progress::start(name, total, live, self.show_progress);
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (worker, state)) in workers.into_iter().zip(states).enumerate() {
            let body = body.clone();
            tasks.spawn(async move {
                let (worker, state) = body(worker, state).await;
                (index, worker.recorder, state)
            });
        }
        let mut merged = Recorder::new();
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (index, recorder, state) = joined.context("a load worker panicked")?;
            merged.merge(recorder);
            done.push((index, state));
        }
        let elapsed = started.elapsed();
        progress.finish();
        done.sort_by_key(|(index, _)| *index);
        let states = done.into_iter().map(|(_, state)| state).collect();
        Ok((merged.finish(name, elapsed), states))
    }

    /// `GET /healthz` with the same concurrency, for as many requests as `like` made (and
    /// no longer than `duration`): the ceiling of this HTTP stack on this machine.
    pub async fn baseline(
        &self,
        like: &PhaseStats,
        duration: Option<Duration>,
    ) -> anyhow::Result<PhaseStats> {
        let budget = Arc::new(Budget::new(duration, Some(like.requests.max(1))));
        let call = Arc::new(Call::get("/healthz")?);
        let (stats, _) = self
            .phase(
                "baseline",
                Some(like.requests.max(1)),
                vec![(); self.concurrency],
                move |mut worker, ()| {
                    let budget = budget.clone();
                    let call = call.clone();
                    async move {
                        while budget.take() {
                            worker.call(&call, false).await;
                        }
                        (worker, ())
                    }
                },
            )
            .await?;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_ends_at_its_request_cap() {
        let budget = Budget::new(None, Some(3));
        assert_eq!((0..10).filter(|_| budget.take()).count(), 3);
        let unbounded_in_count = Budget::new(Some(Duration::from_secs(60)), None);
        assert!((0..1000).all(|_| unbounded_in_count.take()));
        let over = Budget::new(Some(Duration::ZERO), None);
        assert!(!over.take());
    }
}
