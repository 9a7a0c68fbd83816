//! The wasm-bindgen API the page's worker calls: thin glue over the native-tested modules.
//! Every failure is a `JsError` with a readable message; nothing here reads a GPU synchronously.

use std::cell::RefCell;
use std::rc::Rc;

use burn::prelude::*;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::backend::ComputeDevice;
use crate::bench::{self, BenchConfig};
use crate::data::{Mnist, NamedBytes, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use crate::evaluation;
use crate::model::{CLASSES, PIXELS};
use crate::pad;
use crate::training::{Checkpoint, Event, TrainConfig, Trainer};
use crate::weights::ModelWeights;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(error: impl std::fmt::Display) -> JsError {
    JsError::new(&error.to_string())
}

fn to_js(value: &impl Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js_error)
}

struct Datasets {
    train_file: Mnist,
    test: Mnist,
}

/// Weights to evaluate and where they came from, for the metrics' title.
#[derive(Clone)]
struct Trained {
    weights: ModelWeights,
    origin: String,
}

#[derive(Serialize)]
struct DataSummary {
    train: usize,
    test: usize,
    class_counts: [usize; CLASSES],
}

#[derive(Serialize)]
struct TrainSummary {
    stopped: bool,
    early_stopped: bool,
    epochs: usize,
    backend: String,
}

#[derive(Serialize)]
struct MetricsReply<'a> {
    weights_from: &'a str,
    #[serde(flatten)]
    metrics: &'a evaluation::Metrics,
}

/// One browser session: data, the chosen device, the latest weights and a CPU copy for drawing.
#[wasm_bindgen]
#[derive(Default)]
pub struct Mnist7k {
    data: RefCell<Option<Rc<Datasets>>>,
    compute: RefCell<Option<ComputeDevice>>,
    checkpoint: RefCell<Option<Checkpoint>>,
    trained: RefCell<Option<Trained>>,
    /// Kept on the CPU so that drawing predictions never wait for, or disturb, the GPU.
    predictor: RefCell<Option<crate::model::Cnn>>,
}

#[wasm_bindgen]
impl Mnist7k {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and validates the four MNIST files (raw or gzip); returns the class counts.
    #[wasm_bindgen(js_name = loadData)]
    pub fn load_data(
        &self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
    ) -> Result<JsValue, JsError> {
        let named = |name, bytes| NamedBytes { name, bytes };
        let train_file = Mnist::from_idx(
            named(TRAIN_IMAGES, train_images),
            named(TRAIN_LABELS, train_labels),
        )
        .map_err(js_error)?;
        let test = Mnist::from_idx(
            named(TEST_IMAGES, test_images),
            named(TEST_LABELS, test_labels),
        )
        .map_err(js_error)?;
        let summary = DataSummary {
            train: train_file.len(),
            test: test.len(),
            class_counts: train_file.class_counts(),
        };
        *self.data.borrow_mut() = Some(Rc::new(Datasets { train_file, test }));
        to_js(&summary)
    }

    /// Selects "cpu" or "webgpu" (call "webgpu" only once JS found an adapter). Returns the label.
    #[wasm_bindgen(js_name = useBackend)]
    pub async fn use_backend(&self, name: String) -> Result<String, JsError> {
        let compute = match name.as_str() {
            "cpu" => ComputeDevice::cpu(),
            "webgpu" => ComputeDevice::gpu().await.map_err(|e| JsError::new(&e))?,
            other => return Err(JsError::new(&format!("unknown backend {other:?}"))),
        };
        let label = compute.label();
        *self.compute.borrow_mut() = Some(compute);
        Ok(label)
    }

    /// Trains with `config` (the recipe; missing fields take the report's values), optionally
    /// resuming from a checkpoint. `on_event(event)` is called after every batch and epoch and
    /// returns a Promise of `false` to stop (which also lets the worker read its messages).
    pub async fn train(
        &self,
        config: JsValue,
        resume: JsValue,
        on_event: js_sys::Function,
    ) -> Result<JsValue, JsError> {
        let config: TrainConfig = serde_wasm_bindgen::from_value(config)
            .map_err(|e| JsError::new(&format!("invalid training settings: {e}")))?;
        let resume: Option<Checkpoint> = serde_wasm_bindgen::from_value(resume)
            .map_err(|e| JsError::new(&format!("invalid checkpoint: {e}")))?;
        let data = self.datasets()?;
        let compute = self.compute()?;
        if let Some(checkpoint) = &resume {
            self.set_predictor(&checkpoint.weights)?;
        }
        let mut trainer =
            Trainer::new(config, &data.train_file, &compute, resume).map_err(js_error)?;
        let mut batches = 0usize;
        loop {
            let event = trainer.step().await.map_err(js_error)?;
            match &event {
                Event::Batch(_) => {
                    batches += 1;
                    // On the CPU the live model is already where predictions run: share it.
                    if compute.backend == crate::backend::Backend::Cpu && batches.is_multiple_of(25)
                    {
                        *self.predictor.borrow_mut() = Some(trainer.inference_model());
                    }
                }
                Event::Epoch(_) => self.record(&trainer, None)?,
                Event::Done { .. } => {}
            }
            let keep_going = JsFuture::from(js_sys::Promise::resolve(
                &on_event
                    .call1(&JsValue::NULL, &to_js(&event)?)
                    .map_err(|e| JsError::new(&format!("progress callback failed: {e:?}")))?,
            ))
            .await
            .map(|v| v.as_bool() != Some(false))
            .unwrap_or(true);
            if let Event::Done { early_stopped } = event {
                return self.finish(&trainer, false, early_stopped).await;
            }
            if !keep_going {
                return self.finish(&trainer, true, false).await;
            }
        }
    }

    /// The latest checkpoint (weights, best weights, history) as a plain object, or `null`.
    pub fn checkpoint(&self) -> Result<JsValue, JsError> {
        to_js(&*self.checkpoint.borrow())
    }

    /// Class probabilities for 784 pixels in [0, 1] (row-major 28x28), from the latest weights.
    pub async fn predict(&self, pixels: Vec<f32>) -> Result<Vec<f32>, JsError> {
        if pixels.len() != PIXELS {
            return Err(JsError::new(&format!(
                "predict needs {PIXELS} pixels (28x28), got {}",
                pixels.len()
            )));
        }
        if !pixels.iter().all(|p| p.is_finite()) {
            return Err(JsError::new("predict needs finite pixel values"));
        }
        let model =
            self.predictor.borrow().clone().ok_or_else(|| {
                JsError::new("no trained weights yet: train or load weights first")
            })?;
        let device = Device::flex();
        let input = Tensor::<2>::from_data(TensorData::new(pixels, [1, PIXELS]), &device);
        let data = model
            .probabilities(input)
            .into_data_async()
            .await
            .map_err(|e| JsError::new(&format!("prediction failed: {e:?}")))?;
        data.try_to_vec_as::<f32>()
            .map_err(|e| JsError::new(&format!("{e:?}")))
    }

    /// MNIST-style preprocessing of a drawing (`width*height` ink values in [0, 1]); `undefined`
    /// when nothing is drawn.
    pub fn preprocess(
        &self,
        ink: &[f32],
        width: usize,
        height: usize,
    ) -> Result<Option<Vec<f32>>, JsError> {
        pad::preprocess(ink, width, height).map_err(js_error)
    }

    /// Loss, accuracy, classification reports (training file and test set), confusion matrix
    /// and misclassified test images of the trained weights, computed on the CPU.
    /// `on_progress(done, total)` hears how many of the images are evaluated, chunk by chunk.
    pub async fn metrics(&self, on_progress: Option<js_sys::Function>) -> Result<JsValue, JsError> {
        let data = self.datasets()?;
        let trained = self
            .trained
            .borrow()
            .clone()
            .ok_or_else(|| JsError::new("nothing trained yet: train first"))?;
        let history = self
            .checkpoint
            .borrow()
            .as_ref()
            .map(|c| c.history.clone())
            .unwrap_or_default();
        let device = Device::flex();
        let model = trained.weights.to_model(&device).map_err(js_error)?;
        let mut progress = |done: usize, total: usize| {
            if let Some(f) = &on_progress {
                // A throwing listener only loses a progress update, never the metrics.
                let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
            }
        };
        let metrics = evaluation::metrics(
            &model,
            &data.train_file,
            &data.test,
            &device,
            history,
            &mut progress,
        )
        .await
        .map_err(js_error)?;
        to_js(&MetricsReply {
            weights_from: &trained.origin,
            metrics: &metrics,
        })
    }

    /// Times training batches of the real model on the loaded data and the chosen backend, as
    /// `scripts/bench.sh` does natively; the trained weights are left alone. `config` is a
    /// partial `BenchConfig` (or undefined for the defaults).
    pub async fn bench(&self, config: JsValue) -> Result<JsValue, JsError> {
        let config: BenchConfig = if config.is_undefined() || config.is_null() {
            BenchConfig::default()
        } else {
            serde_wasm_bindgen::from_value(config)
                .map_err(|e| JsError::new(&format!("invalid benchmark settings: {e}")))?
        };
        let data = self.datasets()?;
        let result = bench::run(&self.compute()?, &data.train_file, config)
            .await
            .map_err(js_error)?;
        to_js(&result)
    }

    /// The 784 pixel bytes of test image `index`, for the gallery of mistakes.
    #[wasm_bindgen(js_name = testImage)]
    pub fn test_image(&self, index: usize) -> Result<Vec<u8>, JsError> {
        let data = self.datasets()?;
        if index >= data.test.len() {
            return Err(JsError::new(&format!("there is no test image {index}")));
        }
        Ok(data.test.image(index).to_vec())
    }

    /// The weights metrics and predictions use, as a JSON file's text.
    #[wasm_bindgen(js_name = weightsJson)]
    pub fn weights_json(&self) -> Option<String> {
        self.trained.borrow().as_ref().map(|t| t.weights.to_json())
    }

    /// Loads a weights file saved by `weightsJson` (or by the native CLI's `--weights`).
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&self, json: &str) -> Result<(), JsError> {
        let weights = ModelWeights::from_json(json).map_err(js_error)?;
        self.set_predictor(&weights)?;
        *self.trained.borrow_mut() = Some(Trained {
            weights,
            origin: "a loaded weights file".into(),
        });
        Ok(())
    }
}

impl Mnist7k {
    fn datasets(&self) -> Result<Rc<Datasets>, JsError> {
        self.data
            .borrow()
            .clone()
            .ok_or_else(|| JsError::new("the MNIST data is not loaded yet"))
    }

    fn compute(&self) -> Result<ComputeDevice, JsError> {
        self.compute
            .borrow()
            .clone()
            .ok_or_else(|| JsError::new("no backend selected yet"))
    }

    fn set_predictor(&self, weights: &ModelWeights) -> Result<(), JsError> {
        let model = weights.to_model(&Device::flex()).map_err(js_error)?;
        *self.predictor.borrow_mut() = Some(model);
        Ok(())
    }

    /// Stores the trainer's checkpoint and points predictions and metrics at its weights.
    fn record(&self, trainer: &Trainer, stopped: Option<Trained>) -> Result<(), JsError> {
        let checkpoint = trainer.checkpoint().cloned();
        let trained = stopped.or_else(|| {
            checkpoint.as_ref().map(|c| Trained {
                weights: c.best_weights.clone(),
                origin: format!("epoch {} (lowest validation loss)", c.best_epoch),
            })
        });
        if let Some(trained) = &trained {
            self.set_predictor(&trained.weights)?;
        }
        *self.checkpoint.borrow_mut() = checkpoint;
        *self.trained.borrow_mut() = trained;
        Ok(())
    }

    async fn finish(
        &self,
        trainer: &Trainer,
        stopped: bool,
        early_stopped: bool,
    ) -> Result<JsValue, JsError> {
        let partial = if stopped {
            let weights = ModelWeights::read(&trainer.inference_model())
                .await
                .map_err(js_error)?;
            let done = trainer.checkpoint().map_or(0, Checkpoint::epochs_done);
            Some(Trained {
                weights,
                origin: format!("the weights when Stop was pressed (after {done} full epochs)"),
            })
        } else {
            None
        };
        self.record(trainer, partial)?;
        to_js(&TrainSummary {
            stopped,
            early_stopped,
            epochs: trainer.checkpoint().map_or(0, Checkpoint::epochs_done),
            backend: trainer.backend().to_string(),
        })
    }
}
