//! The report's recipe as a step-by-step trainer: Adam, batch 128, reshuffled epochs, the last 20%
//! held out, early stopping on validation loss. Steps are async so that a browser can show
//! progress, take a Stop between batches and read the GPU without blocking.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ComputeDevice};
use crate::clock::now_seconds;
use crate::config::TrainConfig;
use crate::data::Mnist;
use crate::error::{Error, CHANCE_LOSS};
use crate::evaluation::{evaluate, images, CHUNK};
use crate::history::{Checkpoint, EpochRecord};
use crate::model::{Cnn, PIXELS};
use crate::optimizer::Stepper;
use crate::rng::SplitMix64;
use crate::schedule::learning_rate;
use crate::threads::in_pool;
use crate::weights::ModelWeights;

/// Where training stands after a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchProgress {
    pub epoch: usize,
    pub batch: usize,
    pub batches: usize,
    pub samples_per_second: f64,
    /// Time left for this epoch's batches at the current speed.
    pub epoch_eta_seconds: f64,
    /// Running means over the epoch so far; `None` between reads (a GPU is read only every few
    /// batches to keep it busy).
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    Batch(BatchProgress),
    Epoch(EpochRecord),
    /// Training is over: the epoch budget is spent or validation loss stopped improving.
    Done {
        early_stopped: bool,
    },
}

/// Splits the 60,000-image training file as Keras' `validation_split` does, then applies `limit`.
pub fn split(train_file: &Mnist, config: &TrainConfig) -> (Mnist, Mnist) {
    let (fit, validation) = train_file.split_last(config.validation_split);
    match config.limit {
        Some(limit) if limit < fit.len() => {
            let held = (validation.len() * limit).div_ceil(fit.len()).max(1);
            (fit.slice(0, limit), validation.slice(0, held))
        }
        _ => (fit, validation),
    }
}

/// A running training loss above this (ten times a uniform guess's) is divergence.
const DIVERGED_LOSS: f64 = 10.0 * CHANCE_LOSS;

pub struct Trainer {
    config: TrainConfig,
    device: Device,
    backend: String,
    /// On the CPU the optimizer's state is read after each epoch (a GPU is read only
    /// asynchronously, which burn's optimizer states cannot do).
    on_cpu: bool,
    model: Cnn,
    /// The weight average the recipe's `average_decay` asks for, once a step has run: what is
    /// validated, kept and predicted with, while `model` is what the optimizer moves.
    average: Option<Cnn>,
    optimizer: Stepper,
    train: Mnist,
    validation: Mnist,
    rng: SplitMix64,
    /// Draws the augmentation's shifts and rotations.
    augment_rng: SplitMix64,
    order: Vec<usize>,
    cursor: usize,
    /// Sums over the epoch so far, kept on the device and read every `read_every` batches.
    loss_sum: Option<Tensor<1>>,
    correct: Option<Tensor<1, Int>>,
    read_every: usize,
    last_read: Option<(f64, f64)>,
    epoch_start: f64,
    /// Seconds in this epoch's training steps so far.
    step_seconds: f64,
    checkpoint: Option<Checkpoint>,
    done: bool,
}

impl Trainer {
    /// A trainer on `device` (a plain device; autodiff is added here). `resume` continues from a
    /// checkpoint, for example after WebGPU failed and training moved to the CPU.
    pub fn new(
        config: TrainConfig,
        train_file: &Mnist,
        compute: &ComputeDevice,
        resume: Option<Checkpoint>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let (train, validation) = split(train_file, &config);
        if train.is_empty() || validation.is_empty() {
            return Err(Error::Config(
                "not enough images for a training and a validation set".into(),
            ));
        }
        let device = compute.device.clone().autodiff();
        device.seed(config.seed);
        let model = match &resume {
            Some(checkpoint) if checkpoint.weights.network != config.network => {
                return Err(Error::Config(format!(
                    "the run to resume trained another network ({}) than the settings' ({})",
                    checkpoint.weights.network, config.network
                )))
            }
            Some(checkpoint) => checkpoint
                .trained
                .as_ref()
                .unwrap_or(&checkpoint.weights)
                .to_model(&device)?,
            None => Cnn::new(&config.network, &device)?,
        };
        // A checkpoint of an averaging run keeps the average as its weights, the trained ones
        // beside them; a checkpoint and settings that disagree would train on from the average,
        // or keep an average that never moves.
        let average = match &resume {
            Some(checkpoint) if checkpoint.trained.is_some() != (config.average_decay > 0.0) => {
                return Err(Error::Config(
                    "the run to resume and its settings disagree on weight averaging".into(),
                ))
            }
            Some(checkpoint) if checkpoint.trained.is_some() => {
                Some(checkpoint.weights.to_model(&device)?)
            }
            _ => None,
        };
        let optimizer = match resume.as_ref().and_then(|c| c.optimizer.as_ref()) {
            Some(state) => Stepper::restore(&config, state, &model, &device.clone().inner())?,
            None => Stepper::new(&config),
        };
        let mut trainer = Self {
            optimizer,
            rng: SplitMix64(config.seed),
            augment_rng: SplitMix64(config.seed ^ 0x5eed_a11e),
            // A CPU read is free; a GPU read stalls the queue, so read a GPU every few batches.
            read_every: if compute.backend == Backend::Cpu {
                1
            } else {
                8
            },
            order: (0..train.len()).collect(),
            cursor: train.len(),
            device,
            backend: compute.label(),
            on_cpu: compute.backend == Backend::Cpu,
            model,
            average,
            train,
            validation,
            loss_sum: None,
            correct: None,
            last_read: None,
            epoch_start: 0.0,
            step_seconds: 0.0,
            done: resume
                .as_ref()
                .is_some_and(|c| c.finished(config.epochs, config.patience)),
            checkpoint: resume,
            config,
        };
        trainer.replay_finished_epochs();
        Ok(trainer)
    }

    /// Draws the random numbers the finished epochs of a resumed run drew (their shuffles and
    /// augmentations), so that the next epoch sees what it would have seen without the break.
    fn replay_finished_epochs(&mut self) {
        let augmentation = self.config.augmentation();
        for _ in 0..self.epochs_done() {
            self.rng.shuffle(&mut self.order);
            augmentation.skip(self.train.len(), &mut self.augment_rng);
        }
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.batch_size)
    }

    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    fn epochs_done(&self) -> usize {
        self.checkpoint.as_ref().map_or(0, Checkpoint::epochs_done)
    }

    /// The network being trained, or its weight average where the recipe asks for one, without
    /// autodiff (for predictions mid-training and the weights when Stop is pressed).
    pub fn inference_model(&self) -> Cnn {
        self.average.as_ref().unwrap_or(&self.model).valid()
    }

    /// Advances by one batch, or closes the epoch when its batches are done.
    pub async fn step(&mut self) -> Result<Event, Error> {
        if self.done {
            return Ok(Event::Done {
                early_stopped: self.epochs_done() < self.config.epochs,
            });
        }
        if self.cursor >= self.order.len() {
            if self.loss_sum.is_some() {
                return self.finish_epoch().await.map(Event::Epoch);
            }
            self.start_epoch();
        }
        self.train_batch().await.map(Event::Batch)
    }

    fn start_epoch(&mut self) {
        // Dropout draws from the device's generator, whose state cannot be saved: each epoch
        // after the first starts it afresh from the seed, so a resumed run draws the same masks.
        let epoch = self.epochs_done() as u64;
        if epoch > 0 {
            self.device
                .seed(self.config.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        }
        self.rng.shuffle(&mut self.order);
        self.cursor = 0;
        self.last_read = None;
        self.epoch_start = now_seconds();
        self.step_seconds = 0.0;
    }

    /// One optimizer step on the images from the cursor to `end`: their summed loss and the
    /// number right, still on the device.
    fn learn(&mut self, end: usize) -> (Tensor<1>, Tensor<1, Int>) {
        let indices = &self.order[self.cursor..end];
        let mut pixels = self.train.batch_pixels(indices);
        self.config
            .augmentation()
            .apply(&mut pixels, &mut self.augment_rng);
        let images = Tensor::<2>::from_data(
            TensorData::new(pixels, [indices.len(), PIXELS]),
            &self.device,
        );
        let targets = Tensor::<1, Int>::from_data(
            TensorData::new(self.train.batch_labels(indices), [indices.len()]),
            &self.device,
        );
        let batch_index = self.cursor / self.config.batch_size;
        let rate = learning_rate(
            &self.config,
            self.epochs_done(),
            batch_index,
            self.batches_per_epoch(),
        );
        let logits = self.model.forward(images);
        let loss =
            self.config
                .loss
                .mean(self.config.network.output, logits.clone(), targets.clone());
        let batch_loss = loss.clone().inner() * indices.len() as f32;
        let batch_correct = logits
            .inner()
            .argmax(1)
            .flatten::<1>(0, 1)
            .equal(targets.inner())
            .int()
            .sum();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optimizer.step(rate, self.model.clone(), grads);
        self.model.settle_running_statistics();
        let step = self.epochs_done() * self.batches_per_epoch() + batch_index + 1;
        if let Some(decay) = self.config.average_decay_at(step) {
            self.average = Some(match &self.average {
                Some(average) => self.model.averaged_into(average, decay),
                // The first average is the weights themselves.
                None => self.model.averaged_into(&self.model, 0.0),
            });
        }
        (batch_loss, batch_correct)
    }

    async fn train_batch(&mut self) -> Result<BatchProgress, Error> {
        let step_start = now_seconds();
        let end = (self.cursor + self.config.batch_size).min(self.order.len());
        let (batch_loss, batch_correct) = in_pool(|| self.learn(end));
        self.cursor = end;

        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + batch_loss,
            None => batch_loss,
        });
        self.correct = Some(match self.correct.take() {
            Some(sum) => sum + batch_correct,
            None => batch_correct,
        });
        let batch = self.cursor.div_ceil(self.config.batch_size);
        let epoch_over = self.cursor >= self.order.len();
        let read = if batch.is_multiple_of(self.read_every) || epoch_over {
            let running = self.read_running_means().await?;
            self.last_read = Some(running);
            Some(running)
        } else {
            None
        };
        let now = now_seconds();
        self.step_seconds += now - step_start;
        let elapsed = (now - self.epoch_start).max(1e-9);
        let samples_per_second = self.cursor as f64 / elapsed;
        Ok(BatchProgress {
            epoch: self.epochs_done() + 1,
            batch,
            batches: self.batches_per_epoch(),
            samples_per_second,
            epoch_eta_seconds: (self.order.len() - self.cursor) as f64 / samples_per_second,
            loss: read.map(|r| r.0),
            accuracy: read.map(|r| r.1),
        })
    }

    /// Mean loss and accuracy over the epoch so far, in one device read.
    async fn read_running_means(&self) -> Result<(f64, f64), Error> {
        let (Some(loss), Some(correct)) = (self.loss_sum.clone(), self.correct.clone()) else {
            return Ok((f64::NAN, f64::NAN));
        };
        let data = Transaction::default()
            .register(loss)
            .register(correct)
            .execute_async()
            .await
            .map_err(Error::read)?;
        let loss = data[0].try_to_vec_as::<f32>().map_err(Error::read)?[0] as f64;
        let correct = data[1].try_to_vec_as::<i64>().map_err(Error::read)?[0];
        let seen = self.cursor as f64;
        let mean = loss / seen;
        // Not finite, or ten times worse than guessing: the run has blown up (a learning rate of
        // 0.9 sends it past 10,000 within the first epoch) and carrying on would only end at
        // chance level. Stop and say so.
        if !mean.is_finite() || (self.config.loss.is_log_loss() && mean > DIVERGED_LOSS) {
            return Err(Error::Diverged {
                epoch: self.epochs_done() + 1,
                batch: self.cursor.div_ceil(self.config.batch_size),
                loss: mean,
                learning_rate: self.config.learning_rate,
            });
        }
        Ok((mean, correct as f64 / seen))
    }

    async fn finish_epoch(&mut self) -> Result<EpochRecord, Error> {
        let seconds = now_seconds() - self.epoch_start;
        let (train_loss, train_accuracy) = match self.last_read {
            Some(read) => read,
            None => self.read_running_means().await?,
        };
        self.loss_sum = None;
        self.correct = None;
        let validation_start = now_seconds();
        self.average_norm_statistics();
        let inference = self.inference_model();
        let inner = self.device.clone().inner();
        let on_validation = evaluate(
            &inference,
            &self.validation,
            &inner,
            self.config.loss,
            |_| std::future::ready(()),
        )
        .await?;
        let validation_seconds = now_seconds() - validation_start;
        let record = EpochRecord {
            epoch: self.epochs_done() + 1,
            train_loss,
            train_accuracy,
            val_loss: on_validation.loss,
            val_accuracy: on_validation.accuracy(self.validation.labels()),
            seconds,
            step_seconds: self.step_seconds,
            validation_seconds,
            samples_per_second: self.train.len() as f64 / seconds.max(1e-9),
            backend: self.backend.clone(),
        };
        let weights = self.weights(&inference).await?;
        let trained = match self.average {
            Some(_) => Some(self.weights(&self.model.valid()).await?),
            None => None,
        };
        let optimizer = match self.on_cpu {
            true => Some(self.optimizer.save()?),
            false => None,
        };
        self.record_epoch(record.clone(), weights);
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.optimizer = optimizer;
            checkpoint.trained = trained;
        }
        Ok(record)
    }

    /// The recipe's `norm_images`: batch-norm statistics of the validated model (the weight
    /// average, if any) averaged over the first images of the training split as they are,
    /// without augmentation, in evaluation-sized chunks. Training itself never reads the running
    /// statistics, so its steps are the same with or without.
    fn average_norm_statistics(&mut self) {
        let count = self.config.norm_images.min(self.train.len());
        // Not even the pool to enter.
        if count == 0 {
            return;
        }
        let indices: Vec<usize> = (0..count).collect();
        let (train, device) = (&self.train, &self.device);
        let model = self.average.as_mut().unwrap_or(&mut self.model);
        let batches = indices
            .chunks(CHUNK)
            .map(|chunk| images(train, chunk, device));
        in_pool(|| model.average_norm_statistics(batches));
    }

    /// The weights of `model` with the settings that trained them.
    pub async fn weights(&self, model: &Cnn) -> Result<ModelWeights, Error> {
        let mut weights = ModelWeights::read(model).await?;
        weights.settings = Some(self.config.clone());
        Ok(weights)
    }

    /// Early stopping (Keras' `EarlyStopping(monitor="val_loss", patience)`), keeping the best
    /// weights so that metrics describe the model early stopping chose.
    fn record_epoch(&mut self, record: EpochRecord, weights: ModelWeights) {
        let checkpoint = match self.checkpoint.take() {
            None => Checkpoint::first(record, weights),
            Some(mut checkpoint) => {
                checkpoint.push(record, weights);
                checkpoint
            }
        };
        self.done = checkpoint.finished(self.config.epochs, self.config.patience);
        self.checkpoint = Some(checkpoint);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn limit_shrinks_validation_in_proportion() {
        let set = Mnist::from_parts(vec![0; 100 * PIXELS], vec![1; 100]);
        let config = TrainConfig {
            limit: Some(40),
            ..TrainConfig::default()
        };
        let (train, validation) = split(&set, &config);
        assert_eq!((train.len(), validation.len()), (40, 10));
    }
}
