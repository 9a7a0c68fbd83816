//! The CPU's threads: rayon's pool natively and in the browser's all-cores module (Web Workers
//! sharing its memory), one thread in the other browser module.

#[cfg(any(not(target_arch = "wasm32"), threads))]
use std::sync::atomic::{AtomicBool, Ordering};

/// Threads the CPU backend computes on.
pub fn cpu_threads() -> usize {
    #[cfg(any(not(target_arch = "wasm32"), threads))]
    return rayon::current_num_threads();
    #[cfg(all(target_arch = "wasm32", not(threads)))]
    1
}

/// Runs `work` on one of the pool's threads, which then starts each parallel part of it (every
/// convolution, pooling...) from inside the pool. Called from outside, each part would make the
/// caller hand it over and sleep until it is done: in a browser every such hand-over is a wake-up
/// through `Atomics.wait`, and a training step's dozens of them left the pool idle about 40% of
/// the time (a profile of the all-cores module in Chromium). The arithmetic is the same on any
/// thread, so the bits are too.
///
/// While `work` runs, every other pool thread stays awake looking for its parallel parts
/// (`keep_busy`) instead of going to sleep between them: each part started on a sleeping thread
/// first waits for its wake-up, slow in Chromium.
#[cfg(any(not(target_arch = "wasm32"), threads))]
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        let owner = rayon::current_thread_index();
        let done = &done;
        scope.spawn_broadcast(move |_, _| {
            // The owner could pick its own copy up while it waits inside `work`: it must not
            // spin there, on top of the work it waits for.
            if rayon::current_thread_index() != owner {
                keep_busy(done);
            }
        });
        let result = work();
        done.store(true, Ordering::Release);
        result
    })
}

/// Runs whatever parallel work the pool has until `done`, or until none has come for a while:
/// the bound frees a thread that picked this up while itself waiting inside a parallel part,
/// whose own work lies under it on its stack.
#[cfg(any(not(target_arch = "wasm32"), threads))]
fn keep_busy(done: &AtomicBool) {
    /// Rounds without work before giving up: about 40 ms natively on the development machine
    /// (measured once, under load), far longer than a training step's serial stretches (single
    /// element-wise passes over a batch, Adam's update).
    const IDLE_ROUNDS: u32 = 200_000;
    let mut idle = 0;
    while !done.load(Ordering::Acquire) && idle < IDLE_ROUNDS {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle = 0;
        } else {
            idle += 1;
            std::hint::spin_loop();
        }
    }
}

#[cfg(all(target_arch = "wasm32", not(threads)))]
pub fn in_pool<R>(work: impl FnOnce() -> R) -> R {
    work()
}

/// Runs `work` on each task: in parallel natively and in the browser's all-cores module.
#[cfg(any(not(target_arch = "wasm32"), threads))]
pub fn for_each_task<T: Send>(tasks: Vec<T>, work: impl Fn(T) + Sync + Send) {
    use rayon::prelude::*;
    tasks.into_par_iter().for_each(work);
}

#[cfg(all(target_arch = "wasm32", not(threads)))]
pub fn for_each_task<T>(tasks: Vec<T>, work: impl Fn(T)) {
    tasks.into_iter().for_each(work);
}

/// Runs `kernel(i, part)` on each `part_len`-long part of `out` (see [`for_each_task`]).
pub fn for_each_part(
    out: &mut [f32],
    part_len: usize,
    kernel: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    for_each_task(
        out.chunks_mut(part_len).enumerate().collect(),
        |(i, part)| kernel(i, part),
    );
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use rayon::prelude::*;

    /// Natively the tests call `in_pool` from several threads at once, each step keeping the
    /// others' threads awake: every step still ends, with its own result.
    #[test]
    fn steps_started_from_several_threads_at_once_all_end_with_their_own_results() {
        let step = |k: u64| (0..10_000u64).into_par_iter().map(|i| i * k).sum::<u64>();
        let totals: Vec<u64> = std::thread::scope(|s| {
            let callers: Vec<_> = (0..4)
                .map(|k| s.spawn(move || (0..20).map(|_| super::in_pool(|| step(k))).sum()))
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let expected: Vec<u64> = (0..4)
            .map(|k| 20 * k * (0..10_000u64).sum::<u64>())
            .collect();
        assert_eq!(totals, expected);
    }
}
