//! A device-independent copy of the network's parameters: what moves a model between WebGPU and
//! the CPU, keeps the best epoch for early stopping, and is saved to or loaded from a file.

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Transaction;
use serde::{Deserialize, Serialize};

use crate::model::Cnn;

const FORMAT: &str = "mnist7k-weights-v1";

/// Layer names and shapes in the order they are stored; Keras' layout except that conv kernels
/// are `[out, in, h, w]` and the dense kernel is `[in, out]`.
const LAYOUT: [(&str, &[usize]); 10] = [
    ("conv1.weight", &[8, 1, 3, 3]),
    ("conv1.bias", &[8]),
    ("conv2.weight", &[8, 8, 3, 3]),
    ("conv2.bias", &[8]),
    ("conv3.weight", &[16, 8, 3, 3]),
    ("conv3.bias", &[16]),
    ("conv4.weight", &[16, 16, 3, 3]),
    ("conv4.bias", &[16]),
    ("dense.weight", &[256, 10]),
    ("dense.bias", &[10]),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor32 {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelWeights {
    pub format: String,
    pub tensors: Vec<Tensor32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("not an mnist7k weights file: {0}")]
    Unreadable(String),
    #[error("weights file format is {found:?}, this app reads {FORMAT:?}")]
    Format { found: String },
    #[error("weights file should hold {expected} tensors, it holds {found}")]
    Count { expected: usize, found: usize },
    #[error("tensor {index} should be {expected} with shape {shape:?}, found {found} with shape {found_shape:?} and {values} values")]
    Layout {
        index: usize,
        expected: &'static str,
        shape: &'static [usize],
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

/// A weights file of this network is about 0.1 MB of JSON; anything far larger is another file.
const MAX_FILE_MB: usize = 4;

fn float_params(model: &Cnn) -> [Tensor<1>; 10] {
    let conv = |c: &burn::nn::conv::Conv2d| {
        let bias = c.bias.as_ref().expect("every conv layer has a bias").val();
        (c.weight.val().flatten::<1>(0, 3), bias)
    };
    let (w1, b1) = conv(&model.conv1);
    let (w2, b2) = conv(&model.conv2);
    let (w3, b3) = conv(&model.conv3);
    let (w4, b4) = conv(&model.conv4);
    let dense_bias = model.dense.bias.as_ref().expect("dense has a bias").val();
    let dense = model.dense.weight.val().flatten::<1>(0, 1);
    [w1, b1, w2, b2, w3, b3, w4, b4, dense, dense_bias]
}

fn param<const D: usize>(t: &Tensor32, device: &Device) -> Param<Tensor<D>> {
    let shape: [usize; D] = t.shape.clone().try_into().expect("layout checked");
    Param::from_data(TensorData::new(t.values.clone(), shape), device)
}

impl ModelWeights {
    /// Reads every parameter in one batched, asynchronous device read.
    pub async fn read(model: &Cnn) -> Result<Self, WeightsError> {
        let transaction = float_params(model)
            .into_iter()
            .fold(Transaction::default(), |tx, t| tx.register(t));
        let data = transaction
            .execute_async()
            .await
            .map_err(|e| WeightsError::DeviceRead(format!("{e:?}")))?;
        let tensors = data
            .into_iter()
            .zip(LAYOUT)
            .map(|(data, (name, shape))| {
                let values = data
                    .try_to_vec_as::<f32>()
                    .map_err(|e| WeightsError::DeviceRead(format!("{e:?}")))?;
                Ok(Tensor32 {
                    name: name.to_string(),
                    shape: shape.to_vec(),
                    values,
                })
            })
            .collect::<Result<_, WeightsError>>()?;
        Ok(Self {
            format: FORMAT.to_string(),
            tensors,
        })
    }

    /// Checks names, shapes, lengths and values against the network's layout.
    pub fn validate(&self) -> Result<(), WeightsError> {
        if self.format != FORMAT {
            return Err(WeightsError::Format {
                found: self.format.clone(),
            });
        }
        if self.tensors.len() != LAYOUT.len() {
            return Err(WeightsError::Count {
                expected: LAYOUT.len(),
                found: self.tensors.len(),
            });
        }
        for (index, (t, (name, shape))) in self.tensors.iter().zip(LAYOUT).enumerate() {
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
        let t = &self.tensors;
        let mut model = Cnn::new(device);
        for (i, conv) in [
            &mut model.conv1,
            &mut model.conv2,
            &mut model.conv3,
            &mut model.conv4,
        ]
        .into_iter()
        .enumerate()
        {
            conv.weight = param(&t[2 * i], device);
            conv.bias = Some(param(&t[2 * i + 1], device));
        }
        model.dense.weight = param(&t[8], device);
        model.dense.bias = Some(param(&t[9], device));
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
        let weights: Self =
            serde_json::from_str(text).map_err(|e| WeightsError::Unreadable(e.to_string()))?;
        weights.validate()?;
        Ok(weights)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::model::PIXELS;

    fn read(model: &Cnn) -> ModelWeights {
        pollster::block_on(ModelWeights::read(model)).unwrap()
    }

    #[test]
    fn round_trip_through_json_gives_the_same_predictions() {
        let device = Device::flex();
        device.seed(3);
        let mut model = Cnn::new(&device);
        // Fresh biases are zero: random ones make a swapped or dropped bias change the output
        // (conv3 and conv4 both have 16).
        let random = |n: usize| {
            let values = Tensor::<1>::random([n], burn::tensor::Distribution::Default, &device);
            Some(Param::from_tensor(values))
        };
        for conv in [
            &mut model.conv1,
            &mut model.conv2,
            &mut model.conv3,
            &mut model.conv4,
        ] {
            conv.bias = random(conv.weight.val().dims()[0]);
        }
        model.dense.bias = random(crate::model::CLASSES);
        let weights = read(&model);
        assert_eq!(
            weights
                .tensors
                .iter()
                .map(|t| t.values.len())
                .sum::<usize>(),
            crate::model::PARAMETERS
        );
        let loaded = ModelWeights::from_json(&weights.to_json())
            .unwrap()
            .to_model(&device)
            .unwrap();
        let input = Tensor::<2>::random([4, PIXELS], burn::tensor::Distribution::Default, &device);
        let a: Vec<f32> = model
            .forward(input.clone())
            .into_data()
            .try_to_vec_as()
            .unwrap();
        let b: Vec<f32> = loaded.forward(input).into_data().try_to_vec_as().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_files_are_rejected_with_reasons() {
        let weights = read(&Cnn::new(&Device::flex()));
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
        let mut short = weights;
        short.tensors.pop();
        assert!(matches!(
            short.validate(),
            Err(WeightsError::Count { found: 9, .. })
        ));
    }
}
