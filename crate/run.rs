//! A run as it is kept: the page stores one per training in IndexedDB (and exports it), the CLI
//! writes one with `--json`, and either side reads the other's. Its checkpoint (latest and best
//! weights, optimizer state, history) is what a reload resumes from.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::Error;
use crate::history::Checkpoint;
use crate::session::MetricsReport;

pub const RUN_FORMAT: &str = "mnist7k-run-1";

/// Where a run stands. `Running` in storage after a reload means the tab went away mid-run:
/// the page offers to resume it from its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Stopped,
    EarlyStopped,
    Finished,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub format: String,
    pub name: String,
    /// When it started, in milliseconds since 1970 (JavaScript's `Date.now()`).
    pub created: f64,
    pub state: RunState,
    pub backend: String,
    pub params: usize,
    pub settings: TrainConfig,
    /// Training time so far, the finished epochs' batches and validation.
    pub seconds: f64,
    pub checkpoint: Option<Checkpoint>,
    /// Metrics of the kept weights, once computed.
    pub metrics: Option<MetricsReport>,
}

impl Run {
    /// Reads a run file, checking what a resume or a load would rely on: its format, its
    /// settings (network and budget included), and its weights against its network.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let run: Run =
            serde_json::from_str(text).map_err(|e| Error::Input(format!("not a run file: {e}")))?;
        if run.format != RUN_FORMAT {
            return Err(Error::Input(format!(
                "not a run file: its format is {:?}, not {RUN_FORMAT:?}",
                run.format
            )));
        }
        run.settings.validate()?;
        if let Some(checkpoint) = &run.checkpoint {
            if checkpoint.trained.is_some() != (run.settings.average_decay > 0.0) {
                return Err(Error::Input(
                    "the run's checkpoint and settings disagree on weight averaging".into(),
                ));
            }
            let trained = checkpoint.trained.iter();
            for weights in [&checkpoint.weights, &checkpoint.best_weights]
                .into_iter()
                .chain(trained)
            {
                weights.validate()?;
                if weights.network != run.settings.network {
                    return Err(Error::Input(
                        "the run's weights belong to another network than its settings".into(),
                    ));
                }
            }
        }
        Ok(run)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a run serialises")
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::history::{Checkpoint, EpochRecord};
    use crate::model::Cnn;
    use crate::network::preset;
    use crate::weights::ModelWeights;
    use burn::prelude::Device;

    fn run_of(settings: TrainConfig, weights_of: &str) -> Run {
        let device = Device::flex();
        let model = Cnn::new(&preset(weights_of).unwrap(), &device).unwrap();
        let weights = pollster::block_on(ModelWeights::read(&model)).unwrap();
        let record = EpochRecord {
            epoch: 1,
            train_loss: 0.5,
            train_accuracy: 0.9,
            val_loss: 0.4,
            val_accuracy: 0.91,
            seconds: 3.0,
            step_seconds: 2.5,
            validation_seconds: 0.3,
            samples_per_second: 1000.0,
            backend: "cpu".into(),
        };
        Run {
            format: RUN_FORMAT.into(),
            name: "a run".into(),
            created: 1.7e12,
            state: RunState::Running,
            backend: "cpu".into(),
            params: 1066,
            settings,
            seconds: 3.0,
            checkpoint: Some(Checkpoint::first(record, weights)),
            metrics: None,
        }
    }

    #[test]
    fn a_run_file_round_trips_and_a_bad_one_says_why() {
        let tiny = TrainConfig {
            network: preset("tiny").unwrap(),
            ..TrainConfig::default()
        };
        let run = run_of(tiny.clone(), "tiny");
        assert_eq!(Run::from_json(&run.to_json()).unwrap(), run);

        let other = Run::from_json(&run_of(tiny.clone(), "report").to_json()).unwrap_err();
        assert_eq!(
            other.to_string(),
            "the run's weights belong to another network than its settings"
        );
        let wrong = Run {
            format: "mnist7k-weights-2".into(),
            ..run.clone()
        };
        let error = Run::from_json(&wrong.to_json()).unwrap_err().to_string();
        assert!(
            error.contains("its format is \"mnist7k-weights-2\""),
            "{error}"
        );
        let mut averaged = run.clone();
        let checkpoint = averaged.checkpoint.as_mut().unwrap();
        checkpoint.trained = Some(checkpoint.weights.clone());
        let error = Run::from_json(&averaged.to_json()).unwrap_err().to_string();
        assert_eq!(
            error,
            "the run's checkpoint and settings disagree on weight averaging"
        );
        averaged.settings.average_decay = 0.99;
        assert_eq!(Run::from_json(&averaged.to_json()).unwrap(), averaged);
        let error = Run::from_json("{\"format\": 1}").unwrap_err().to_string();
        assert!(error.contains("not a run file"), "{error}");
        let bad_settings = Run {
            settings: TrainConfig {
                learning_rate: -1.0,
                ..tiny
            },
            ..run
        };
        let error = Run::from_json(&bad_settings.to_json()).unwrap_err();
        assert_eq!(error.kind(), crate::error::ErrorKind::Config, "{error}");
    }
}
