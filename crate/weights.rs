//! A device-independent copy of the network's parameters: what moves a model between WebGPU and
//! the CPU, keeps the best epoch for early stopping, and is saved to or loaded from a file.

use burn::module::{Param, RunningState};
use burn::prelude::*;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::model::{Cnn, Learned};
use crate::network::{Layer, Network, NetworkError};

const FORMAT: &str = "mnist7k-weights-v2";
/// Files of the report's fixed network, before networks could be designed: still readable.
const FORMAT_V1: &str = "mnist7k-weights-v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor32 {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The parameters of a network and its description, so that a file restores its architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelWeights {
    pub format: String,
    #[serde(default)]
    pub network: Network,
    /// The settings of the run that trained them (none for weights made otherwise), so that a
    /// file says how to train its network again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<TrainConfig>,
    pub tensors: Vec<Tensor32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("not an mnist7k weights file: {0}")]
    Unreadable(String),
    #[error("weights file format is {found:?}, this app reads {FORMAT:?}")]
    Format { found: String },
    #[error("the weights file's network is not valid: {0}")]
    Network(#[from] NetworkError),
    #[error("weights file should hold {expected} tensors, it holds {found}")]
    Count { expected: usize, found: usize },
    #[error("tensor {index} should be {expected} with shape {shape:?}, found {found} with shape {found_shape:?} and {values} values")]
    Layout {
        index: usize,
        expected: String,
        shape: Vec<usize>,
        found: String,
        found_shape: Vec<usize>,
        values: usize,
    },
    #[error("tensor {name} holds a value that is not a finite number")]
    NotFinite { name: String },
    #[error("could not read the weights from the device: {0}")]
    DeviceRead(String),
    #[error("no trained weights yet: train or load weights first")]
    NoneYet,
    #[error("the weights file is {megabytes:.1} MB; an mnist7k weights file is well under {MAX_FILE_MB} MB")]
    TooLarge { megabytes: f64 },
}

/// A weights file of a network under the budget is about 0.1 MB of JSON; anything far larger
/// is another file.
const MAX_FILE_MB: usize = 4;

/// Tensor names and shapes in the order they are stored, from the description: each layer's
/// Keras name, then `weight`/`bias` (conv kernels `[out, in, h, w]`, dense kernels `[in, out]`)
/// or batch norm's `gamma`, `beta`, `running_mean`, `running_var`.
pub fn layout(network: &Network) -> Result<Vec<(String, Vec<usize>)>, NetworkError> {
    let names = network.names();
    let mut out = Vec::new();
    for step in network.walk()? {
        let name = &names[step.index];
        let c = step.input.channels();
        let tensors: Vec<(&str, Vec<usize>)> = match *step.layer {
            Layer::Conv2d {
                filters, kernel, ..
            } => vec![
                ("weight", vec![filters, c, kernel, kernel]),
                ("bias", vec![filters]),
            ],
            Layer::Dense { units, .. } => vec![
                ("weight", vec![step.input.len(), units]),
                ("bias", vec![units]),
            ],
            Layer::BatchNorm => ["gamma", "beta", "running_mean", "running_var"]
                .map(|t| (t, vec![c]))
                .to_vec(),
            _ => Vec::new(),
        };
        out.extend(
            tensors
                .into_iter()
                .map(|(t, shape)| (format!("{name}.{t}"), shape)),
        );
    }
    Ok(out)
}

/// Every stored tensor of `model`, flattened, in [`layout`] order.
fn flat_tensors(model: &Cnn) -> Vec<Tensor<1>> {
    let bias = |b: &Option<Param<Tensor<1>>>| b.as_ref().expect("layers have biases").val();
    model
        .learned
        .iter()
        .flat_map(|learned| match learned {
            Learned::Conv(c) => vec![c.weight.val().flatten::<1>(0, 3), bias(&c.bias)],
            Learned::Dense(d) => vec![d.weight.val().flatten::<1>(0, 1), bias(&d.bias)],
            Learned::Norm(n) => vec![
                n.gamma.val(),
                n.beta.val(),
                n.running_mean.value(),
                n.running_var.value(),
            ],
        })
        .collect()
}

fn param<const D: usize>(t: &Tensor32, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(t, device))
}

fn tensor<const D: usize>(t: &Tensor32, device: &Device) -> Tensor<D> {
    let shape: [usize; D] = t.shape.clone().try_into().expect("layout checked");
    Tensor::from_data(TensorData::new(t.values.clone(), shape), device)
}

impl ModelWeights {
    /// Reads every parameter in one batched, asynchronous device read.
    pub async fn read(model: &Cnn) -> Result<Self, WeightsError> {
        let layout = layout(model.network())?;
        let transaction = flat_tensors(model)
            .into_iter()
            .fold(Transaction::default(), |tx, t| tx.register(t));
        let data = transaction
            .execute_async()
            .await
            .map_err(|e| WeightsError::DeviceRead(format!("{e:?}")))?;
        let tensors = data
            .into_iter()
            .zip(layout)
            .map(|(data, (name, shape))| {
                let values = data
                    .try_to_vec_as::<f32>()
                    .map_err(|e| WeightsError::DeviceRead(format!("{e:?}")))?;
                Ok(Tensor32 {
                    name,
                    shape,
                    values,
                })
            })
            .collect::<Result<_, WeightsError>>()?;
        Ok(Self {
            format: FORMAT.to_string(),
            network: model.network().clone(),
            settings: None,
            tensors,
        })
    }

    /// Checks the network, then names, shapes, lengths and values against its layout.
    pub fn validate(&self) -> Result<(), WeightsError> {
        if self.format != FORMAT {
            return Err(WeightsError::Format {
                found: self.format.clone(),
            });
        }
        // A file may hold a network over today's budget; it must still be a whole network.
        self.network.validate(usize::MAX)?;
        let layout = layout(&self.network)?;
        if self.tensors.len() != layout.len() {
            return Err(WeightsError::Count {
                expected: layout.len(),
                found: self.tensors.len(),
            });
        }
        for (index, (t, (name, shape))) in self.tensors.iter().zip(layout).enumerate() {
            let len: usize = shape.iter().product();
            if t.name != name || t.shape != shape || t.values.len() != len {
                return Err(WeightsError::Layout {
                    index,
                    expected: name,
                    shape,
                    found: t.name.clone(),
                    found_shape: t.shape.clone(),
                    values: t.values.len(),
                });
            }
            if !t.values.iter().all(|v| v.is_finite()) {
                return Err(WeightsError::NotFinite {
                    name: t.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// A network on `device` holding these weights.
    pub fn to_model(&self, device: &Device) -> Result<Cnn, WeightsError> {
        self.validate()?;
        let mut model = Cnn::new(&self.network, device)?;
        let mut t = self.tensors.iter();
        let mut next = || t.next().expect("layout checked");
        for learned in &mut model.learned {
            match learned {
                Learned::Conv(c) => {
                    c.weight = param(next(), device);
                    c.bias = Some(param(next(), device));
                }
                Learned::Dense(d) => {
                    d.weight = param(next(), device);
                    d.bias = Some(param(next(), device));
                }
                Learned::Norm(n) => {
                    n.gamma = param(next(), device);
                    n.beta = param(next(), device);
                    n.running_mean = RunningState::new(tensor(next(), device));
                    n.running_var = RunningState::new(tensor(next(), device));
                }
            }
        }
        Ok(model)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("weights serialise")
    }

    pub fn from_json(text: &str) -> Result<Self, WeightsError> {
        if text.len() > MAX_FILE_MB * 1_000_000 {
            return Err(WeightsError::TooLarge {
                megabytes: text.len() as f64 / 1e6,
            });
        }
        let mut weights: Self =
            serde_json::from_str(text).map_err(|e| WeightsError::Unreadable(e.to_string()))?;
        if weights.format == FORMAT_V1 {
            weights = weights.upgrade_v1()?;
        }
        weights.validate()?;
        Ok(weights)
    }

    /// A v1 file held the report's network under other names (`conv1` .. `conv4`, `dense`):
    /// same tensors, same order.
    fn upgrade_v1(mut self) -> Result<Self, WeightsError> {
        let network = Network::report();
        let layout = layout(&network)?;
        if self.tensors.len() != layout.len() {
            return Err(WeightsError::Count {
                expected: layout.len(),
                found: self.tensors.len(),
            });
        }
        for (t, (name, _)) in self.tensors.iter_mut().zip(layout) {
            t.name = name;
        }
        self.format = FORMAT.to_string();
        self.network = network;
        Ok(self)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::model::PIXELS;
    use crate::network::{presets, BUDGET};
    use burn::tensor::Distribution;

    fn read(model: &Cnn) -> ModelWeights {
        pollster::block_on(ModelWeights::read(model)).unwrap()
    }

    /// Fresh biases are zero and fresh batch-norm state is 0/1: random values make a swapped or
    /// dropped tensor change the output.
    fn randomise(model: &mut Cnn, device: &Device) {
        let random = |n: usize| Tensor::<1>::random([n], Distribution::Default, device);
        for learned in &mut model.learned {
            match learned {
                Learned::Conv(c) => c.bias = Some(Param::from_tensor(random(c.weight.dims()[0]))),
                Learned::Dense(d) => d.bias = Some(Param::from_tensor(random(d.weight.dims()[1]))),
                Learned::Norm(n) => {
                    let c = n.gamma.dims()[0];
                    n.gamma = Param::from_tensor(random(c) + 0.5);
                    n.beta = Param::from_tensor(random(c));
                    n.running_mean = RunningState::new(random(c));
                    n.running_var = RunningState::new(random(c) + 0.5);
                }
            }
        }
    }

    #[test]
    fn round_trip_through_json_gives_the_same_network_and_predictions() {
        let device = Device::flex();
        device.seed(3);
        for preset in presets() {
            let mut model = Cnn::new(&preset.network, &device).unwrap();
            randomise(&mut model, &device);
            let weights = read(&model);
            let (summary, _) = preset.network.summary(BUDGET);
            assert_eq!(
                weights
                    .tensors
                    .iter()
                    .map(|t| t.values.len())
                    .sum::<usize>(),
                summary.total + summary.non_trainable,
                "{}",
                preset.id
            );
            let loaded = ModelWeights::from_json(&weights.to_json()).unwrap();
            assert_eq!(loaded.network, preset.network);
            let loaded = loaded.to_model(&device).unwrap();
            let input = Tensor::<2>::random([4, PIXELS], Distribution::Default, &device);
            let a: Vec<f32> = model
                .forward(input.clone())
                .into_data()
                .try_to_vec_as()
                .unwrap();
            let b: Vec<f32> = loaded.forward(input).into_data().try_to_vec_as().unwrap();
            assert_eq!(a, b, "{}", preset.id);
        }
    }

    #[test]
    fn the_report_networks_layout_keeps_keras_names() {
        let names: Vec<String> = layout(&Network::report())
            .unwrap()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names[0], "conv2d.weight");
        assert_eq!(names[3], "conv2d_1.bias");
        assert_eq!(names[8..], ["dense.weight", "dense.bias"]);
    }

    #[test]
    fn a_v1_file_of_the_reports_network_still_loads() {
        let weights = read(&Cnn::new(&Network::report(), &Device::flex()).unwrap());
        let old_names = [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "conv3.weight",
            "conv3.bias",
            "conv4.weight",
            "conv4.bias",
            "dense.weight",
            "dense.bias",
        ];
        let mut v1 = serde_json::to_value(&weights).unwrap();
        v1["format"] = "mnist7k-weights-v1".into();
        v1.as_object_mut().unwrap().remove("network");
        for (t, name) in v1["tensors"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .zip(old_names)
        {
            t["name"] = name.into();
        }
        let loaded = ModelWeights::from_json(&v1.to_string()).unwrap();
        assert_eq!(loaded, weights);
    }

    #[test]
    fn bad_files_are_rejected_with_reasons() {
        let weights = read(&Cnn::new(&Network::report(), &Device::flex()).unwrap());
        assert!(matches!(
            ModelWeights::from_json("{\"not\": 1}"),
            Err(WeightsError::Unreadable(_))
        ));
        let mut wrong_shape = weights.clone();
        wrong_shape.tensors[8].shape = vec![10, 256];
        assert!(matches!(
            wrong_shape.validate(),
            Err(WeightsError::Layout { index: 8, .. })
        ));
        let mut nan = weights.clone();
        nan.tensors[0].values[0] = f32::NAN;
        assert!(matches!(
            nan.validate(),
            Err(WeightsError::NotFinite { .. })
        ));
        let mut other_network = weights.clone();
        other_network.network = presets()[1].network.clone();
        assert!(matches!(
            other_network.validate(),
            Err(WeightsError::Count { found: 10, .. }) | Err(WeightsError::Layout { .. })
        ));
        let mut broken = weights.clone();
        broken.network.layers.pop();
        assert_eq!(
            broken.validate().unwrap_err().to_string(),
            "the weights file's network is not valid: the network must end in 10 outputs, one \
             per digit; it ends in 256 (make the last Dense layer 10 units)"
        );
        let mut short = weights;
        short.tensors.pop();
        assert!(matches!(
            short.validate(),
            Err(WeightsError::Count { found: 9, .. })
        ));
    }
}
