//! The training benchmark in headless Firefox (`scripts/bench.sh`), through wasm-pack and
//! geckodriver: playwright-core cannot drive Debian's Firefox ESR, so Chromium is measured
//! through the app instead (`scripts/bench-browser.mjs`). Prints one `BENCH_JSON {...}` line per
//! backend. Behind the `bench` feature so that plain `wasm-pack test` stays quick.
#![cfg(all(target_arch = "wasm32", feature = "bench"))]

use mnist7k::backend::ComputeDevice;
use mnist7k::bench::{run, BenchConfig};
use mnist7k::data::{Mnist, NamedBytes};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

static TRAIN_IMAGES: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz");
static TRAIN_LABELS: &[u8] = include_bytes!("../data/train-labels-idx1-ubyte.gz");

fn user_agent() -> String {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    js_sys::Reflect::get(&navigator, &"userAgent".into())
        .ok()
        .and_then(|v| v.as_string())
        .unwrap_or_default()
}

async fn bench(compute: ComputeDevice, config: BenchConfig) {
    let data = Mnist::from_idx(
        NamedBytes {
            name: "train-images",
            bytes: TRAIN_IMAGES,
        },
        NamedBytes {
            name: "train-labels",
            bytes: TRAIN_LABELS,
        },
    )
    .unwrap();
    let result = run(&compute, &data, config).await.unwrap();
    let result = serde_json::to_value(&result).unwrap();
    let line =
        serde_json::json!({ "where": "browser", "user_agent": user_agent(), "result": result });
    web_sys::console::log_1(&JsValue::from_str(&format!("BENCH_JSON {line}")));
    let loss = result["final_loss"].as_f64().unwrap_or(f64::NAN);
    assert!(
        loss < 2.0,
        "the benchmark must learn (an untrained net scores ln 10 = 2.3): loss {loss}"
    );
}

#[wasm_bindgen_test]
async fn bench_cpu() {
    bench(ComputeDevice::cpu(), BenchConfig::default()).await;
}

#[wasm_bindgen_test]
async fn bench_webgpu() {
    let compute = ComputeDevice::gpu().await.expect("a WebGPU adapter");
    // Software adapters run ~100 samples/s: fewer, equally sized windows.
    bench(
        compute,
        BenchConfig {
            windows: 3,
            ..BenchConfig::default()
        },
    )
    .await;
}
