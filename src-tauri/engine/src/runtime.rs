//! The async runtime the engine's front ends run it on.
//!
//! A runtime with one worker per core, tokio's default, stalls SSH streams
//! when the machine is busy: every stream waits on the device's window
//! (Dropbear's default is 24 KiB), so each one needs this process woken
//! hundreds of times per image, and with two workers every stream waits
//! for one of the two to be scheduled. The fleet benchmark showed it (see
//! `BENCHMARKS.md`): on two cores shared with 200 lab devices, uploads in
//! a batch of 32 took 1.7 s with two workers and 1.1 s with 32. Workers
//! that have nothing to do sleep and cost a few KiB each.
//!
//! Upgrade operations have since moved off this runtime: each runs on a
//! thread of its own with a runtime of that one thread ([`on_own_thread`],
//! used by `upgrade::run`). The scheduler, the window's commands, probes
//! and discovery stay here.

/// Workers of the runtime: enough for every operation of a batch at the
/// highest concurrency people use to have its own, whatever the cores.
/// FIXME: chosen while operations ran here; not measured again since they
/// run on threads of their own, where fewer workers may do.
pub const WORKER_THREADS: usize = 32;

/// Builds the multi-threaded runtime with [`WORKER_THREADS`] workers, or as
/// many as the machine has cores if that is more.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS.max(cores))
        .thread_name("fwu-worker")
        .enable_all()
        .build()
}

/// Runs the future `work` makes on a thread of its own (`name`), on a
/// runtime of that one thread, and waits for its output. What the future
/// spawns runs on that thread too, so its tasks never wake each other
/// across cores.
///
/// Errs when the thread or its runtime could not start, or when the thread
/// panicked.
pub async fn on_own_thread<F, Fut, T>(name: &str, work: F) -> std::io::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let (output, waiting) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let ran = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(work()));
            let _ = output.send(ran);
        })?;
    waiting
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("it ended without a result")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_thread_and_runtime_of_its_own() {
        let caller = std::thread::current().id();
        let seen = on_own_thread("fwu-operation", move || async move {
            let here = std::thread::current();
            assert_ne!(here.id(), caller);
            assert_eq!(here.name(), Some("fwu-operation"));
            let flavor = tokio::runtime::Handle::current().runtime_flavor();
            assert_eq!(flavor, tokio::runtime::RuntimeFlavor::CurrentThread);
            // What the work spawns (russh's session task) runs there too.
            let spawned = tokio::spawn(async { std::thread::current().name().map(String::from) });
            assert_eq!(spawned.await.unwrap().as_deref(), Some("fwu-operation"));
            "done"
        })
        .await;
        assert_eq!(seen.unwrap(), "done");
    }

    #[tokio::test]
    async fn work_whose_thread_panics_ends_in_an_error() {
        let ended = on_own_thread("fwu-operation", || async { panic!("the work broke") }).await;
        assert!(ended.is_err(), "{ended:?}");
    }
}
