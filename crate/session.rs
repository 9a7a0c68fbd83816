//! One person's session, the same in the browser's worker, the CLI and the tests: the data, the
//! chosen device, the latest checkpoint, the weights that metrics and predictions use, and a CPU
//! copy of them for drawing. Its rules: every finished epoch's weights are kept whatever happens
//! next (Stop, an error, a crash of the caller); Stop keeps the weights trained so far; early
//! stopping keeps the best epoch's.
//!
//! Methods take `&self` and never hold a borrow across an `await`, so a browser can ask for a
//! prediction while a run is between batches.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ComputeDevice};
use crate::bench::{self, BenchConfig, BenchResult};
use crate::config::TrainConfig;
use crate::data::{
    DataError, Mnist, NamedBytes, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use crate::error::Error;
use crate::evaluation::{self, Metrics};
use crate::history::{Checkpoint, EpochRecord};
use crate::inside::{look_inside, Inside};
use crate::loss::Loss;
use crate::model::{Cnn, CLASSES, PIXELS};
use crate::network::Network;
use crate::pad;
use crate::training::{Event, Trainer};
use crate::weights::{ModelWeights, WeightsError};

/// How often (in batches) a CPU run hands its live weights to the drawing pad.
const SHARE_EVERY: usize = 25;

struct Datasets {
    train_file: Mnist,
    test: Mnist,
}

/// Weights to evaluate, where they came from (for the metrics' title) and the history of the run
/// that trained them (empty for a loaded file).
#[derive(Clone)]
struct Trained {
    weights: ModelWeights,
    origin: String,
    history: Vec<EpochRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataSummary {
    pub train: usize,
    pub test: usize,
    pub class_counts: [usize; CLASSES],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainSummary {
    pub stopped: bool,
    pub early_stopped: bool,
    pub epochs: usize,
    pub backend: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsReport {
    pub weights_from: String,
    #[serde(flatten)]
    pub metrics: Metrics,
}

#[derive(Default)]
pub struct Session {
    data: RefCell<Option<Rc<Datasets>>>,
    compute: RefCell<Option<ComputeDevice>>,
    checkpoint: RefCell<Option<Checkpoint>>,
    trained: RefCell<Option<Trained>>,
    /// Kept on the CPU so that drawing predictions never wait for, or disturb, the GPU.
    predictor: RefCell<Option<Cnn>>,
}

fn check_pixels(pixels: &[f32]) -> Result<(), Error> {
    if pixels.len() != PIXELS {
        return Err(Error::Input(format!(
            "predict needs {PIXELS} pixels (28x28), got {}",
            pixels.len()
        )));
    }
    if !pixels.iter().all(|p| p.is_finite()) {
        return Err(Error::Input("predict needs finite pixel values".into()));
    }
    Ok(())
}

async fn read_values<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, Error> {
    let data = tensor.into_data_async().await.map_err(Error::read)?;
    data.try_to_vec_as::<f32>().map_err(Error::read)
}

impl Session {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and validates the four MNIST files (raw or gzip), in the order of
    /// [`crate::data::DATA_FILES`].
    pub fn load_data(&self, files: [&[u8]; 4]) -> Result<DataSummary, Error> {
        let named = |name, bytes| NamedBytes { name, bytes };
        let train_file =
            Mnist::from_idx(named(TRAIN_IMAGES, files[0]), named(TRAIN_LABELS, files[1]))?;
        let test = Mnist::from_idx(named(TEST_IMAGES, files[2]), named(TEST_LABELS, files[3]))?;
        Ok(self.set_data(train_file, test))
    }

    pub fn set_data(&self, train_file: Mnist, test: Mnist) -> DataSummary {
        let summary = DataSummary {
            train: train_file.len(),
            test: test.len(),
            class_counts: train_file.class_counts(),
        };
        *self.data.borrow_mut() = Some(Rc::new(Datasets { train_file, test }));
        summary
    }

    /// Selects a backend by name (see [`Backend::parse`]); returns its label. In a browser, ask
    /// for WebGPU only once JS found an adapter.
    pub async fn use_backend(&self, name: &str) -> Result<String, Error> {
        let compute = ComputeDevice::named(name).await?;
        let label = compute.label();
        *self.compute.borrow_mut() = Some(compute);
        Ok(label)
    }

    /// The selected backend, if any.
    pub fn backend(&self) -> Option<Backend> {
        self.compute.borrow().as_ref().map(|c| c.backend)
    }

    /// Trains with `config`, optionally resuming from a checkpoint (after a WebGPU failure, or
    /// a reload). `on_event` hears every batch and epoch and answers `false` to stop; it is
    /// awaited, so a browser worker can read its messages in between.
    ///
    /// On an error, the finished epochs stay in [`Session::checkpoint`] and their best weights
    /// stay loaded for metrics and predictions.
    pub async fn train<F: Future<Output = bool>>(
        &self,
        config: TrainConfig,
        resume: Option<Checkpoint>,
        mut on_event: impl FnMut(&Event) -> F,
    ) -> Result<TrainSummary, Error> {
        let data = self.datasets()?;
        let compute = self.compute()?;
        // Settings and the checkpoint's weights are checked before the session takes it over.
        let mut trainer = Trainer::new(config, &data.train_file, &compute, resume.clone())?;
        if let Some(checkpoint) = resume {
            self.record(checkpoint, None)?;
        }
        let mut batches = 0usize;
        loop {
            let event = trainer.step().await?;
            match &event {
                Event::Batch(_) => {
                    batches += 1;
                    // On the CPU the live model is already where predictions run: share it.
                    if compute.backend == Backend::Cpu && batches.is_multiple_of(SHARE_EVERY) {
                        *self.predictor.borrow_mut() = Some(trainer.inference_model());
                    }
                }
                Event::Epoch(_) => {
                    let checkpoint = trainer
                        .checkpoint()
                        .cloned()
                        .expect("an epoch was recorded");
                    self.record(checkpoint, None)?;
                }
                Event::Done { .. } => {}
            }
            let keep_going = on_event(&event).await;
            if let Event::Done { early_stopped } = event {
                return Ok(self.summary(&trainer, false, early_stopped));
            }
            if !keep_going {
                let weights = trainer.weights(&trainer.inference_model()).await?;
                let origin = match trainer.checkpoint().map_or(0, Checkpoint::epochs_done) {
                    0 => "the weights when Stop was pressed, during epoch 1".to_string(),
                    done => format!("the weights when Stop was pressed, after epoch {done}"),
                };
                let stopped = Trained {
                    weights,
                    origin,
                    history: Vec::new(),
                };
                if let Some(checkpoint) = trainer.checkpoint().cloned() {
                    self.record(checkpoint, Some(stopped))?;
                } else {
                    self.use_weights(stopped)?;
                }
                return Ok(self.summary(&trainer, true, false));
            }
        }
    }

    fn summary(&self, trainer: &Trainer, stopped: bool, early_stopped: bool) -> TrainSummary {
        TrainSummary {
            stopped,
            early_stopped,
            epochs: trainer.checkpoint().map_or(0, Checkpoint::epochs_done),
            backend: trainer.backend().to_string(),
        }
    }

    /// The latest checkpoint (weights, best weights, history).
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.checkpoint.borrow().clone()
    }

    /// Class probabilities for 784 pixels in [0, 1] (row-major 28x28), from the latest weights.
    pub async fn predict(&self, pixels: Vec<f32>) -> Result<Vec<f32>, Error> {
        let (model, input) = self.predictor_with(pixels)?;
        read_values(model.probabilities(input)).await
    }

    /// The first filters and every convolution's activation maps of the weights metrics use
    /// (the best epoch's, or loaded ones), for 784 pixels as [`Session::predict`] takes them.
    /// Plain Rust on the CPU: it never waits for a device.
    pub fn inside(&self, pixels: Vec<f32>) -> Result<Inside, Error> {
        check_pixels(&pixels)?;
        let trained = self.trained.borrow();
        let trained = trained.as_ref().ok_or(WeightsError::NoneYet)?;
        Ok(look_inside(&trained.weights, &pixels)?)
    }

    /// MNIST-style preprocessing of a drawing (`width*height` ink values in [0, 1]); `None`
    /// when nothing is drawn.
    pub fn preprocess(
        &self,
        ink: &[f32],
        width: usize,
        height: usize,
    ) -> Result<Option<Vec<f32>>, Error> {
        Ok(pad::preprocess(ink, width, height)?)
    }

    /// Loss, accuracy, classification reports (training file and test set), confusion matrix
    /// and misclassified test images of the weights in use, computed on the CPU.
    /// `on_progress(done, total)` hears the images evaluated after each chunk and is awaited.
    pub async fn metrics<F: Future<Output = ()>>(
        &self,
        on_progress: impl FnMut(usize, usize) -> F,
    ) -> Result<MetricsReport, Error> {
        let data = self.datasets()?;
        let trained = self.trained.borrow().clone().ok_or(WeightsError::NoneYet)?;
        let device = Device::flex();
        let model = trained.weights.to_model(&device)?;
        let loss = trained
            .weights
            .settings
            .as_ref()
            .map_or(Loss::default(), |s| s.loss);
        let metrics = evaluation::metrics(
            &model,
            &data.train_file,
            &data.test,
            &device,
            loss,
            trained.history,
            on_progress,
        )
        .await?;
        Ok(MetricsReport {
            weights_from: trained.origin,
            metrics,
        })
    }

    /// Times training batches of a fresh model on the loaded data and the chosen backend; the
    /// trained weights are left alone.
    pub async fn bench(&self, config: BenchConfig) -> Result<BenchResult, Error> {
        let data = self.datasets()?;
        bench::run(&self.compute()?, &data.train_file, config).await
    }

    /// The 784 pixel bytes of test image `index`, for the gallery of mistakes.
    pub fn test_image(&self, index: usize) -> Result<Vec<u8>, Error> {
        let data = self.datasets()?;
        if index >= data.test.len() {
            return Err(Error::Input(format!("there is no test image {index}")));
        }
        Ok(data.test.image(index).to_vec())
    }

    /// The weights metrics and predictions use.
    pub fn weights(&self) -> Option<ModelWeights> {
        self.trained.borrow().as_ref().map(|t| t.weights.clone())
    }

    /// Uses the weights of a file saved from [`Session::weights`] (or by the CLI's `--weights`)
    /// and returns the network it holds. A bad file changes nothing.
    pub fn load_weights(&self, json: &str) -> Result<Network, Error> {
        let weights = ModelWeights::from_json(json)?;
        let network = weights.network.clone();
        self.use_weights(Trained {
            weights,
            origin: "a loaded weights file".into(),
            history: Vec::new(),
        })?;
        Ok(network)
    }

    /// The CPU model of the latest weights and one image for it.
    fn predictor_with(&self, pixels: Vec<f32>) -> Result<(Cnn, Tensor<2>), Error> {
        check_pixels(&pixels)?;
        let model = self
            .predictor
            .borrow()
            .clone()
            .ok_or(WeightsError::NoneYet)?;
        let input = Tensor::<2>::from_data(TensorData::new(pixels, [1, PIXELS]), &Device::flex());
        Ok((model, input))
    }

    fn datasets(&self) -> Result<Rc<Datasets>, Error> {
        self.data
            .borrow()
            .clone()
            .ok_or_else(|| DataError::NotLoaded.into())
    }

    fn compute(&self) -> Result<ComputeDevice, Error> {
        self.compute
            .borrow()
            .clone()
            .ok_or_else(|| Error::Device("no backend selected yet".into()))
    }

    fn use_weights(&self, trained: Trained) -> Result<(), Error> {
        let model = trained.weights.to_model(&Device::flex())?;
        *self.predictor.borrow_mut() = Some(model);
        *self.trained.borrow_mut() = Some(trained);
        Ok(())
    }

    /// Stores a checkpoint and points predictions and metrics at its best weights, or at
    /// `stopped` (the weights when Stop was pressed).
    fn record(&self, checkpoint: Checkpoint, stopped: Option<Trained>) -> Result<(), Error> {
        let mut trained = stopped.unwrap_or_else(|| Trained {
            weights: checkpoint.best_weights.clone(),
            origin: format!("epoch {} (lowest validation loss)", checkpoint.best_epoch),
            history: Vec::new(),
        });
        trained.history = checkpoint.history.clone();
        *self.checkpoint.borrow_mut() = Some(checkpoint);
        self.use_weights(trained)
    }
}
