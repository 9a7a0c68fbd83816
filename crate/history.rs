//! A run's per-epoch history and the early-stopping rule over it (Keras'
//! `EarlyStopping(monitor="val_loss", patience, restore_best_weights=True)`).

use serde::{Deserialize, Serialize};

use crate::optimizer::OptimizerState;
use crate::weights::ModelWeights;

/// One epoch's line in the history (Keras' `History` plus timing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean over the epoch's batches, with dropout, as Keras reports it.
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// From the epoch's start to its last batch: what `samples_per_second` divides by.
    pub seconds: f64,
    /// The part of `seconds` spent in training steps (forward, backward, optimizer, the running
    /// means' reads); the rest went between steps (in the browser: yielding to the worker's
    /// messages).
    #[serde(default)]
    pub step_seconds: f64,
    /// The validation pass after the last batch (not in `seconds`), with the batch-norm
    /// statistics the recipe's `norm_images` asks for computed first.
    #[serde(default)]
    pub validation_seconds: f64,
    pub samples_per_second: f64,
    pub backend: String,
}

/// Enough to carry on from the last completed epoch, on any backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub weights: ModelWeights,
    pub best_weights: ModelWeights,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub history: Vec<EpochRecord>,
    /// The optimizer's state after the last epoch (Adam's moments), so that a resumed run
    /// continues the same curve; `None` from a GPU run (read only synchronously) or an older
    /// checkpoint, and then the optimizer starts afresh.
    #[serde(default)]
    pub optimizer: Option<OptimizerState>,
    /// With weight averaging, `weights` and `best_weights` are averages and these are the
    /// weights the optimizer moved, after the last epoch, which a resumed run carries on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<ModelWeights>,
}

impl Checkpoint {
    /// The checkpoint after a run's first epoch.
    pub fn first(record: EpochRecord, weights: ModelWeights) -> Self {
        Self {
            best_weights: weights.clone(),
            weights,
            best_epoch: record.epoch,
            best_val_loss: record.val_loss,
            history: vec![record],
            optimizer: None,
            trained: None,
        }
    }

    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }

    /// Adds an epoch. Only a strictly lower validation loss is an improvement (Keras'
    /// `min_delta=0`): a tie keeps the earlier epoch's weights.
    pub fn push(&mut self, record: EpochRecord, weights: ModelWeights) {
        if record.val_loss < self.best_val_loss {
            self.best_weights = weights.clone();
            self.best_epoch = record.epoch;
            self.best_val_loss = record.val_loss;
        }
        self.weights = weights;
        self.history.push(record);
    }

    /// Stop once `patience` epochs in a row failed to improve on the best.
    pub fn stopped_early(&self, patience: usize) -> bool {
        let stale = self.epochs_done() - self.best_epoch;
        stale > 0 && stale >= patience
    }

    /// Whether a run with this budget and patience is over.
    pub fn finished(&self, epochs: usize, patience: usize) -> bool {
        self.epochs_done() >= epochs || self.stopped_early(patience)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::weights::Tensor32;

    /// Weights that say which epoch wrote them.
    fn weights_of(epoch: usize) -> ModelWeights {
        ModelWeights {
            format: "test".into(),
            network: Default::default(),
            settings: None,
            tensors: vec![Tensor32 {
                name: "epoch".into(),
                shape: vec![1],
                values: vec![epoch as f32],
            }],
        }
    }

    fn record(epoch: usize, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 0.0,
            train_accuracy: 0.0,
            val_loss,
            val_accuracy: 0.0,
            seconds: 0.0,
            step_seconds: 0.0,
            validation_seconds: 0.0,
            samples_per_second: 0.0,
            backend: "cpu".into(),
        }
    }

    /// Feeds validation losses until the rule stops: (epochs run, best epoch, kept weights' epoch).
    fn run(losses: &[f64], patience: usize) -> (usize, usize, f32) {
        let mut checkpoint: Option<Checkpoint> = None;
        for (i, &loss) in losses.iter().enumerate() {
            let epoch = i + 1;
            match &mut checkpoint {
                None => {
                    checkpoint = Some(Checkpoint::first(record(epoch, loss), weights_of(epoch)))
                }
                Some(c) => c.push(record(epoch, loss), weights_of(epoch)),
            }
            if checkpoint
                .as_ref()
                .unwrap()
                .finished(losses.len(), patience)
            {
                break;
            }
        }
        let c = checkpoint.unwrap();
        (
            c.epochs_done(),
            c.best_epoch,
            c.best_weights.tensors[0].values[0],
        )
    }

    #[test]
    fn patience_five_stops_five_epochs_after_the_best_and_keeps_it() {
        let losses = [0.9, 0.5, 0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.1, 0.05];
        assert_eq!(run(&losses, 5), (8, 3, 3.0));
    }

    #[test]
    fn an_improvement_within_patience_resets_the_count() {
        let losses = [
            0.9, 0.5, 0.6, 0.6, 0.6, 0.6, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1,
        ];
        assert_eq!(run(&losses, 5), (12, 7, 7.0));
    }

    #[test]
    fn a_tie_is_not_an_improvement() {
        // `<=` would make epoch 7 the best and run on to epoch 12.
        let losses = [
            0.9, 0.3, 0.4, 0.4, 0.4, 0.4, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
        ];
        assert_eq!(run(&losses, 5), (7, 2, 2.0));
    }

    #[test]
    fn a_run_that_keeps_improving_uses_its_whole_budget() {
        let losses = [0.9, 0.8, 0.7, 0.6];
        assert_eq!(run(&losses, 5), (4, 4, 4.0));
        // Patience 0 stops at the first epoch that does not improve.
        assert_eq!(run(&[0.9, 0.8, 0.85, 0.1], 0), (3, 2, 2.0));
    }
}
