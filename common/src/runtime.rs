//! The async runtime both binaries run on, how many workers it has, and running their main
//! future on a worker thread.

use std::future::Future;

/// What `--threads 0` means: one worker per two CPU cores, at least one, for both binaries.
///
/// The work of each end is mostly one task per tunnel (the tunnel's connection, whose HTTP/2
/// state is one lock) and the sockets it serves; more workers mostly add cross-thread wake-ups
/// and contention on that lock, and the other cores are left to the kernel's network stack and
/// to the origin's coding threads. Measured on two cores in BENCHMARKS.md (issue 7): one worker
/// against two took 20-25 % off the origin's CPU per request and per download.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / 2).max(1)
}

/// The runtime: `threads` workers, or with 0 [`default_workers`]; a single worker runs
/// tokio's current-thread scheduler (no work-stealing machinery to pay for). `max_blocking`
/// caps the blocking pool (file reads). On failure, reports and exits with status 1.
pub fn build(threads: usize, max_blocking: Option<usize>) -> tokio::runtime::Runtime {
    raise_fd_limit();
    keep_heap_top();
    let workers = if threads == 0 { default_workers() } else { threads };
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    };
    builder.enable_all();
    if let Some(max) = max_blocking {
        builder.max_blocking_threads(max);
    }
    match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// Run `main` to completion on a worker thread and exit with the status it returns.
///
/// Not in `block_on` on the main thread: with several workers, tasks spawned from a worker (a
/// tunnel's connection task, the streams it wakes) then share that worker and tokio's LIFO
/// slot, instead of every wakeup crossing threads.
pub fn run_main<F>(runtime: tokio::runtime::Runtime, main: F) -> !
where
    F: Future<Output = i32> + Send + 'static,
{
    let code = runtime.block_on(async {
        match tokio::spawn(main).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: main task failed: {e}");
                1
            }
        }
    });
    std::process::exit(code)
}

/// Size of the block [`keep_heap_top`] allocates and frees.
pub const HEAP_TOP_HINT: usize = 1024 * 1024;

/// Stop glibc's allocator from returning the top of the heap to the kernel after every frame.
///
/// Every HTTP/2 frame read from the tunnel lands in a fresh buffer of up to 32 KiB, freed once
/// the front end has taken it. With glibc's defaults the freed top of the heap goes back to the
/// kernel as soon as 128 KiB are free there (`brk`), and the next frame faults its pages in
/// again: 52,000 page faults and 1,700 `brk` calls in `p` for one 256 MiB download. glibc raises
/// its thresholds by itself when a block it had to map is freed (mallopt(3), "dynamic mmap
/// threshold"): freeing one 1 MiB block sets the mmap threshold to 1 MiB and the trim threshold
/// to 2 MiB, so at most 2 MiB of free heap top is kept. No `unsafe` and no effect with other
/// allocators. `black_box` keeps the compiler from eliding the allocation.
pub fn keep_heap_top() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(HEAP_TOP_HINT)));
}

/// Raise the soft limit on open files to the hard limit, as Go's runtime does. Every
/// front-end connection, tunnel and connection to a local service is a file descriptor, and
/// many systems start processes with a soft limit of 1024 while allowing far more.
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else { return };
    let target = limit.maximum.unwrap_or(u64::MAX).min(1 << 20);
    if target > current {
        if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum }) {
            tracing::debug!(error = %e, "cannot raise the open-file limit");
        }
    }
}
