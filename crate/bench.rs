//! Training-speed benchmark: a fixed number of real batches of the real model on real MNIST,
//! timed in windows after a warm-up (shader compilation, caches). Used by the native CLI and
//! the browser benchmark alike, so the numbers are comparable.

use serde::{Deserialize, Serialize};

use crate::backend::ComputeDevice;
use crate::clock::now_seconds;
use crate::config::TrainConfig;
use crate::data::Mnist;
use crate::error::Error;
use crate::network::{Network, BUDGET};
use crate::training::{Event, Trainer};

/// Training costs about three forward passes (forward, and the two halves of backward), each
/// multiply-add two floating-point operations.
pub fn train_flop_per_sample(network: &Network) -> Result<f64, Error> {
    Ok(network.macs()? as f64 * 2.0 * 3.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BenchConfig {
    /// The network to time (the report's by default).
    pub network: Network,
    pub batch_size: usize,
    pub warmup_batches: usize,
    pub windows: usize,
    /// A multiple of 8, so that every window ends with a device read (GPU work is finished).
    pub batches_per_window: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            network: Network::report(),
            batch_size: 128,
            warmup_batches: 8,
            windows: 5,
            batches_per_window: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub backend: String,
    pub batch_size: usize,
    pub batches: usize,
    /// Median over the timed windows.
    pub samples_per_second: f64,
    pub ms_per_batch: f64,
    pub gflops: f64,
    pub window_samples_per_second: Vec<f64>,
    pub first_batch_seconds: f64,
    /// The CPU's threads (rayon's pool natively and in the all-cores module, 1 otherwise).
    #[serde(default = "one")]
    pub threads: usize,
    /// Running training loss after the last batch: a fast but wrong kernel shows here.
    pub final_loss: f64,
    /// [`peak_memory_mib`] when the run ended.
    pub peak_memory_mib: Option<f64>,
}

fn one() -> usize {
    1
}

/// Peak memory so far, in MiB: the wasm heap in a browser (linear memory only grows, so its size
/// is its peak), the process's resident peak natively (Linux `VmHWM`; `None` elsewhere).
pub fn peak_memory_mib() -> Option<f64> {
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
        // An ArrayBuffer, or a SharedArrayBuffer in the all-cores module: both have byteLength.
        let bytes = js_sys::Reflect::get(&memory.buffer(), &"byteLength".into()).ok()?;
        Some(bytes.as_f64()? / 1_048_576.0)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// One training batch; the running loss when the trainer read it. The benchmark's batches all
/// fall inside the first epoch (375 batches of 128), so no validation pass is timed.
async fn next_batch(trainer: &mut Trainer) -> Result<Option<f64>, Error> {
    match trainer.step().await? {
        Event::Batch(progress) => Ok(progress.loss),
        _ => Ok(None),
    }
}

/// Trains `warmup + windows * batches_per_window` batches and times each window.
pub async fn run(
    compute: &ComputeDevice,
    train_file: &Mnist,
    config: BenchConfig,
) -> Result<BenchResult, Error> {
    if config.windows == 0
        || config.batches_per_window == 0
        || !config.batches_per_window.is_multiple_of(8)
    {
        return Err(Error::Config(
            "benchmark windows need a positive multiple of 8 batches".into(),
        ));
    }
    let flop_per_sample = train_flop_per_sample(&config.network)?;
    let recipe = TrainConfig {
        batch_size: config.batch_size,
        network: config.network.clone(),
        // The network is timed whatever its size.
        budget: config.network.params()?.max(BUDGET),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(recipe, train_file, compute, None)?;
    let mut loss = f64::NAN;
    let start = now_seconds();
    next_batch(&mut trainer).await?;
    let first_batch_seconds = now_seconds() - start;
    for _ in 1..config.warmup_batches {
        next_batch(&mut trainer).await?;
    }
    let mut windows = Vec::with_capacity(config.windows);
    for _ in 0..config.windows {
        let start = now_seconds();
        for _ in 0..config.batches_per_window {
            if let Some(l) = next_batch(&mut trainer).await? {
                loss = l;
            }
        }
        let seconds = now_seconds() - start;
        windows.push((config.batches_per_window * config.batch_size) as f64 / seconds);
    }
    let samples_per_second = median(&windows);
    Ok(BenchResult {
        backend: compute.label(),
        batch_size: config.batch_size,
        batches: config.warmup_batches + config.windows * config.batches_per_window,
        samples_per_second,
        ms_per_batch: 1000.0 * config.batch_size as f64 / samples_per_second,
        gflops: samples_per_second * flop_per_sample / 1e9,
        window_samples_per_second: windows,
        first_batch_seconds,
        threads: crate::threads::cpu_threads(),
        final_loss: loss,
        peak_memory_mib: peak_memory_mib(),
    })
}
