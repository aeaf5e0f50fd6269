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
//! thread of its own with a runtime of that one thread (`upgrade::run`).
//! The scheduler, the window's commands, probes and discovery stay here.

/// Workers of the runtime: enough for every operation of a batch at the
/// highest concurrency people use to have its own, whatever the cores.
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
