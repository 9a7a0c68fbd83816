//! The CPU's threads: rayon's pool natively and in the browser's all-cores module (Web Workers
//! sharing its memory), one thread in the other browser module.

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
#[cfg(any(not(target_arch = "wasm32"), threads))]
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

#[cfg(all(target_arch = "wasm32", not(threads)))]
pub fn in_pool<R>(work: impl FnOnce() -> R) -> R {
    work()
}
