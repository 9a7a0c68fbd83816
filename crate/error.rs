//! Every failure the app can report, by kind. The kind travels to the page with the message:
//! the page falls back to the CPU only on a device failure and shows every other kind as what it
//! is (a bad setting, bad data, a bad weights file, a diverging run, refused storage).

use serde::Serialize;

use crate::backend::Backend;
use crate::data::DataError;
use crate::network::NetworkError;
use crate::pad::PadError;
use crate::weights::WeightsError;

/// The cross-entropy of a uniform guess over the ten digits, ln 10.
pub const CHANCE_LOSS: f64 = std::f64::consts::LN_10;

/// What went wrong, coarsely: decides what the page does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// A setting or an input is out of range: fix it and try again.
    Config,
    /// A data file is missing, truncated, corrupt or not MNIST.
    Data,
    /// A weights file is unreadable, of another network or not finite.
    Weights,
    /// The training loss stopped being a finite number.
    Divergence,
    /// The compute device (WebGPU/wgpu) failed or could not start.
    Device,
    /// Files or browser storage could not be written.
    Storage,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("invalid network: {0}")]
    Network(#[from] NetworkError),
    /// Input that is not a setting (pixels to predict, a drawing), wrong in a way the message says.
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(
        "training diverged: the running loss reached {loss:.4} in epoch {epoch} (after {batch} \
         batches), far above the {CHANCE_LOSS:.2} of guessing; try a lower learning rate than \
         {learning_rate}"
    )]
    Diverged {
        epoch: usize,
        batch: usize,
        loss: f64,
        learning_rate: f64,
    },
    #[error("the compute device failed: {0}")]
    Device(String),
    #[error("could not store {what}: {reason}")]
    Storage { what: String, reason: String },
}

impl From<PadError> for Error {
    fn from(error: PadError) -> Self {
        Self::Input(error.to_string())
    }
}

/// What the page does after a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recovery {
    /// Carry on on the CPU from the last finished epoch.
    FallBackToCpu,
    /// Say what went wrong; the finished epochs' weights stay loaded.
    Report,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::Input(_) | Self::Network(_) => ErrorKind::Config,
            Self::Data(_) => ErrorKind::Data,
            // A failed read of the device's parameters is the device's fault, not the file's.
            Self::Weights(WeightsError::DeviceRead(_)) => ErrorKind::Device,
            Self::Weights(_) => ErrorKind::Weights,
            Self::Diverged { .. } => ErrorKind::Divergence,
            Self::Device(_) => ErrorKind::Device,
            Self::Storage { .. } => ErrorKind::Storage,
        }
    }

    /// Only a device failure on the GPU is cured by the CPU: a bad setting or a diverging run
    /// would fail there the same way.
    pub fn recovery(&self, backend: Backend) -> Recovery {
        match (self.kind(), backend) {
            (ErrorKind::Device, Backend::Gpu) => Recovery::FallBackToCpu,
            _ => Recovery::Report,
        }
    }

    /// A device read that failed (burn's execution or transfer errors).
    pub(crate) fn read(error: impl std::fmt::Debug) -> Self {
        Self::Device(format!("reading results back failed: {error:?}"))
    }

    pub fn storage(what: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::Storage {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// An error as the page receives it: `{ kind, message, recovery }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub kind: ErrorKind,
    pub message: String,
    pub recovery: Recovery,
}

impl Report {
    pub fn new(error: &Error, backend: Backend) -> Self {
        Self {
            kind: error.kind(),
            message: error.to_string(),
            recovery: error.recovery(backend),
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn every_kind() -> Vec<(Error, ErrorKind, &'static str)> {
        vec![
            (
                Error::Config("Adam's epsilon must be a positive number".into()),
                ErrorKind::Config,
                "invalid setting: Adam's epsilon must be a positive number",
            ),
            (
                Error::Data(DataError::Missing {
                    file: "train-labels-idx1-ubyte".into(),
                }),
                ErrorKind::Data,
                "train-labels-idx1-ubyte is missing or empty",
            ),
            (
                Error::Weights(WeightsError::NotFinite {
                    name: "conv1.bias".into(),
                }),
                ErrorKind::Weights,
                "tensor conv1.bias holds a value that is not a finite number",
            ),
            (
                Error::Weights(WeightsError::DeviceRead("lost".into())),
                ErrorKind::Device,
                "could not read the weights from the device: lost",
            ),
            (
                Error::Diverged {
                    epoch: 1,
                    batch: 12,
                    loss: f64::NAN,
                    learning_rate: 0.9,
                },
                ErrorKind::Divergence,
                "training diverged: the running loss reached NaN in epoch 1 (after 12 batches), \
                 far above the 2.30 of guessing; try a lower learning rate than 0.9",
            ),
            (
                Error::Device("the GPU device was lost".into()),
                ErrorKind::Device,
                "the compute device failed: the GPU device was lost",
            ),
            (
                Error::storage("run.json", "quota exceeded"),
                ErrorKind::Storage,
                "could not store run.json: quota exceeded",
            ),
        ]
    }

    #[test]
    fn every_kind_has_its_message() {
        for (error, kind, message) in every_kind() {
            assert_eq!(error.kind(), kind, "{error:?}");
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn only_a_device_failure_on_the_gpu_falls_back_to_the_cpu() {
        for (error, kind, _) in every_kind() {
            let on_gpu = error.recovery(Backend::Gpu);
            let expected = if kind == ErrorKind::Device {
                Recovery::FallBackToCpu
            } else {
                Recovery::Report
            };
            assert_eq!(on_gpu, expected, "{error:?}");
            // On the CPU there is nowhere left to fall back to.
            assert_eq!(error.recovery(Backend::Cpu), Recovery::Report, "{error:?}");
        }
        let report = Report::new(&Error::Device("lost".into()), Backend::Gpu);
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "kind": "device",
                "message": "the compute device failed: lost",
                "recovery": "fall_back_to_cpu",
            })
        );
    }
}
