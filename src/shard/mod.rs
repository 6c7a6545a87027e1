//! Shards: one thread per core, each running its own single-threaded
//! runtime (tokio-uring, or plain tokio on the epoll backend).
//!
//! An input is placed on the least loaded shard and lives there: its socket
//! or file, its receive buffers and its ring belong to that thread, so the
//! receive path takes no lock. Work reaches a shard as a boxed job that
//! builds a (non-`Send`) future on the shard's thread.
//!
//! What this module does not do: move an input between shards, or steal
//! work. A stream's input is cheap enough at headend rates that placing by
//! count is enough.

pub mod backend;
pub mod bufring;
pub mod pool;
pub mod ring;
pub mod timer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use backend::{Backend, IoChoice};

/// A unit of work for a shard: runs on the shard's thread and returns the
/// future to drive there.
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Why the shards could not start or take work.
#[derive(Debug, Error)]
pub enum ShardError {
    /// `--shards 0`.
    #[error("--shards must be at least 1")]
    NoShards,
    /// The OS refused a thread.
    #[error("cannot start shard thread {index}: {source}")]
    Spawn {
        /// Shard index.
        index: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// The shard's thread is gone (it panicked or was shut down).
    #[error("shard {0} has stopped")]
    Stopped(usize),
}

struct ShardHandle {
    jobs: mpsc::UnboundedSender<Job>,
    load: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The running shards.
pub struct Shards {
    backend: Backend,
    shards: Vec<ShardHandle>,
}

impl Shards {
    /// Starts `count` shards on `backend`, pinned to cores in order when
    /// `pin` is set (wrapping around when there are more shards than
    /// cores).
    pub fn start(count: usize, backend: Backend, pin: bool) -> Result<Shards, ShardError> {
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        let cores = if pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };
        let mut shards = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, rx) = mpsc::unbounded_channel::<Job>();
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{index}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Pinning is a hint; an unpinned shard still works.
                        core_affinity::set_for_current(core);
                    }
                    run_shard(backend, rx);
                })
                .map_err(|source| ShardError::Spawn { index, source })?;
            shards.push(ShardHandle { jobs: tx, load: Arc::new(AtomicUsize::new(0)), thread: Some(thread) });
        }
        tracing::info!(shards = count, backend = backend.name(), "shards started");
        Ok(Shards { backend, shards })
    }

    /// The backend the shards run.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are no shards (never, once started).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Tasks running on each shard.
    pub fn loads(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.load.load(Ordering::Relaxed)).collect()
    }

    /// Runs the future built by `make` on the least loaded shard; the
    /// result arrives through the returned receiver (which errors if the
    /// shard stops before the future ends).
    pub fn spawn<T, F, Fut>(&self, make: F) -> Result<oneshot::Receiver<T>, ShardError>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let index = (self.shards.iter().enumerate())
            .min_by_key(|(_, s)| s.load.load(Ordering::Relaxed))
            .map(|(index, _)| index)
            .ok_or(ShardError::NoShards)?;
        self.spawn_on(index, make)
    }

    /// Runs the future built by `make` on shard `index` (modulo the shard
    /// count), like [`Shards::spawn`]; for work that must share a shard
    /// (a stream's tasks share its state without locks).
    pub fn spawn_on<T, F, Fut>(&self, index: usize, make: F) -> Result<oneshot::Receiver<T>, ShardError>
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let index = index % self.shards.len().max(1);
        let shard = self.shards.get(index).ok_or(ShardError::NoShards)?;
        let (done_tx, done_rx) = oneshot::channel();
        let load = Arc::clone(&shard.load);
        load.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _placed = LoadGuard(load);
                let value = make().await;
                // The caller may have stopped waiting; that is its business.
                let _ = done_tx.send(value);
            })
        });
        shard.jobs.send(job).map_err(|_| {
            shard.load.fetch_sub(1, Ordering::Relaxed);
            ShardError::Stopped(index)
        })?;
        Ok(done_rx)
    }

    /// Stops taking work, cancels the tasks still running and waits for the
    /// shard threads to end.
    pub fn shutdown(mut self) {
        self.join_all();
    }

    fn join_all(&mut self) {
        for shard in &mut self.shards {
            // Closing the channel ends the shard's job loop.
            let (closed, _) = mpsc::unbounded_channel();
            shard.jobs = closed;
        }
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        self.join_all();
    }
}

/// Counts a task against its shard while it runs.
struct LoadGuard(Arc<AtomicUsize>);

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A shard thread's body: its runtime, running jobs as they come until the
/// job channel closes; then the tasks still running are cancelled (their
/// futures dropped, which releases sockets and buffers) and awaited.
fn run_shard(backend: Backend, jobs: mpsc::UnboundedReceiver<Job>) {
    match backend {
        Backend::Uring => tokio_uring::start(job_loop(jobs)),
        Backend::Epoll => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => tokio::task::LocalSet::new().block_on(&runtime, job_loop(jobs)),
                Err(e) => tracing::error!("shard runtime failed to start: {e}"),
            }
        }
    }
}

async fn job_loop(mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut running = Vec::new();
    while let Some(job) = jobs.recv().await {
        running.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        running.push(tokio::task::spawn_local(job()));
    }
    for task in &running {
        task.abort();
    }
    for task in running {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_least_loaded_shard_and_return_results() {
        for backend in [Backend::Epoll, Backend::Uring] {
            if backend == Backend::Uring && backend::detect(IoChoice::Uring).is_err() {
                eprintln!("skipping io_uring: unavailable here");
                continue;
            }
            let shards = Shards::start(2, backend, false).unwrap();
            let (hold_tx, hold_rx) = oneshot::channel::<()>();
            let first = shards.spawn(move || async move { hold_rx.await.is_ok() }).unwrap();
            // The first shard is busy, so the next job goes to the other.
            assert_eq!(shards.loads().iter().sum::<usize>(), 1);
            let second = shards.spawn(|| async { std::thread::current().name().map(str::to_owned) }).unwrap();
            let name = second.blocking_recv().unwrap();
            assert_eq!(name.as_deref(), Some("shard-1"));
            hold_tx.send(()).unwrap();
            assert!(first.blocking_recv().unwrap());
            shards.shutdown();
        }
    }

    #[test]
    fn zero_shards_is_refused() {
        assert!(matches!(Shards::start(0, Backend::Epoll, false), Err(ShardError::NoShards)));
    }
}
