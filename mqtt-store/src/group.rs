//! Group commit: many concurrent commits, one fsync.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::batch::Batch;
use crate::error::StoreError;
use crate::store::Store;

/// Settings of a [`GroupCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// How long the writer waits, after the first request of a group, for
    /// more to join it. Longer windows mean fewer fsyncs and more latency
    /// per commit; zero takes only what is already waiting (requests still
    /// pile up while a sync runs). Default: 1 ms.
    pub window: Duration,
    /// Most requests in one group. Default: 1024.
    pub max_group: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(1),
            max_group: 1024,
        }
    }
}

/// What is called once a request is durable, or has failed.
type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Request {
    batch: Batch,
    done: Done,
}

/// A writer thread that commits batches in groups: it collects the
/// requests that arrive within [`GroupCommitConfig::window`], writes each
/// one's batch, syncs **once** for the group, then completes every
/// request. This lets a broker acknowledge each QoS 1/2 PUBLISH only
/// after its effects are durable without one fsync per message.
///
/// Each request's batch applies atomically on its own: one refused batch
/// ([`StoreError::QueueFull`]) fails that request only. A failed sync fails
/// every request of its group. Requests apply in the order submitted.
///
/// From async code, complete a oneshot channel in the callback of
/// [`submit`](Self::submit) and await it; from a thread, call
/// [`commit`](Self::commit).
///
/// The writer reads the monotonic clock to time its window: batching is the
/// one place where this crate needs real time.
pub struct GroupCommit {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread over `store`.
    pub fn spawn<S>(store: Arc<S>, config: GroupCommitConfig) -> std::io::Result<Self>
    where
        S: Store + ?Sized + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mqtt-store-commit".into())
            .spawn(move || writer(&*store, &rx, config))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `batch` and returns at once; `done` is called on the writer
    /// thread once the batch is durable (`Ok`) or has failed. Keep `done`
    /// short: it holds up the rest of the group.
    pub fn submit(&self, batch: Batch, done: impl FnOnce(Result<(), StoreError>) + Send + 'static) {
        let request = Request {
            batch,
            done: Box::new(done),
        };
        let sent = match &self.tx {
            Some(tx) => tx.send(request),
            None => Err(mpsc::SendError(request)),
        };
        if let Err(mpsc::SendError(request)) = sent {
            (request.done)(Err(StoreError::Closed));
        }
    }

    /// Commits `batch` and blocks until it is durable.
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(batch, move |r| {
            // The receiver waits below; it cannot be gone.
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Stops taking requests, completes those queued, and waits for the
    /// writer to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            // A panic on the writer thread has already been reported.
            let _ = thread.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn writer<S: Store + ?Sized>(store: &S, rx: &mpsc::Receiver<Request>, config: GroupCommitConfig) {
    let max = config.max_group.max(1);
    let mut group = Vec::with_capacity(max.min(1024));
    while let Ok(first) = rx.recv() {
        group.push(first);
        let deadline = Instant::now() + config.window;
        while group.len() < max {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(r) => group.push(r),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
        }
        let written: Vec<_> = group.iter().map(|r| store.write(&r.batch)).collect();
        let synced = if written.iter().any(Result::is_ok) {
            store.sync()
        } else {
            Ok(())
        };
        if let Err(e) = &synced {
            tracing::error!(error = %e, requests = group.len(), "group commit sync failed");
        }
        for (request, result) in group.drain(..).zip(written) {
            (request.done)(result.and_then(|()| synced.clone()));
        }
    }
}
