//! The report's network: two conv blocks, dropout and a dense softmax layer, 6,722 parameters.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softmax};
use serde::Serialize;

use crate::conv::conv3x3;

pub const IMAGE_SIDE: usize = 28;
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
pub const CLASSES: usize = 10;
/// The report's count; a test keeps the network honest about it.
pub const PARAMETERS: usize = 6_722;
/// Keras' `Dropout(0.3)` before the dense layer.
pub const DROPOUT: f64 = 0.3;

/// Conv 3x3x8, Conv 3x3x8, MaxPool 2, Conv 3x3x16, Conv 3x3x16, MaxPool 2, Flatten (256),
/// Dropout, Dense 10. `forward` returns logits; softmax lives in the loss and in
/// [`Cnn::probabilities`].
#[derive(Module, Debug)]
pub struct Cnn {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub conv3: Conv2d,
    pub conv4: Conv2d,
    pool: MaxPool2d,
    dropout: Dropout,
    pub dense: Linear,
}

/// One row of the Keras-style summary table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerSummary {
    pub name: &'static str,
    pub output_shape: &'static str,
    pub params: usize,
}

/// Keras initialises kernels with Glorot-uniform and biases with zeros; burn's defaults differ.
fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

fn conv(channels: [usize; 2], device: &Device) -> Conv2d {
    let mut layer = Conv2dConfig::new(channels, [3, 3])
        .with_padding(PaddingConfig2d::Valid)
        .with_initializer(glorot())
        .init(device);
    layer.bias = Some(Param::from_tensor(Tensor::zeros([channels[1]], device)));
    layer
}

impl Cnn {
    /// A freshly initialised network on `device` (seed the device first for reproducibility).
    pub fn new(device: &Device) -> Self {
        let mut dense = LinearConfig::new(256, CLASSES)
            .with_initializer(glorot())
            .init(device);
        dense.bias = Some(Param::from_tensor(Tensor::zeros([CLASSES], device)));
        Self {
            conv1: conv([1, 8], device),
            conv2: conv([8, 8], device),
            conv3: conv([8, 16], device),
            conv4: conv([16, 16], device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            dropout: DropoutConfig::new(DROPOUT).init(),
            dense,
        }
    }

    /// Images `[batch, 784]` in [0, 1] to logits `[batch, 10]`. Dropout is active only on an
    /// autodiff device (training); `valid()` models skip it.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        let [batch, _] = images.dims();
        let x = images.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]);
        let x = relu(conv3x3(&self.conv1, x));
        let x = relu(conv3x3(&self.conv2, x));
        let x = self.pool.forward(x);
        let x = relu(conv3x3(&self.conv3, x));
        let x = relu(conv3x3(&self.conv4, x));
        let x = self.pool.forward(x);
        let x = x.reshape([batch, 256]);
        self.dense.forward(self.dropout.forward(x))
    }

    /// Class probabilities `[batch, 10]`.
    pub fn probabilities(&self, images: Tensor<2>) -> Tensor<2> {
        softmax(self.forward(images), 1)
    }

    /// The layer table the report printed, with this network's actual parameter counts.
    pub fn summary(&self) -> Vec<LayerSummary> {
        let row = |name, output_shape, params| LayerSummary {
            name,
            output_shape,
            params,
        };
        vec![
            row("conv2d (3x3x8, relu)", "26x26x8", self.conv1.num_params()),
            row("conv2d_1 (3x3x8, relu)", "24x24x8", self.conv2.num_params()),
            row("max_pooling2d (2x2)", "12x12x8", 0),
            row(
                "conv2d_2 (3x3x16, relu)",
                "10x10x16",
                self.conv3.num_params(),
            ),
            row("conv2d_3 (3x3x16, relu)", "8x8x16", self.conv4.num_params()),
            row("max_pooling2d_1 (2x2)", "4x4x16", 0),
            row("flatten", "256", 0),
            row("dropout (0.3)", "256", 0),
            row("dense (10, softmax)", "10", self.dense.num_params()),
        ]
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn every_layer_has_the_reports_parameter_count() {
        let model = Cnn::new(&Device::flex());
        let counts: Vec<usize> = model
            .summary()
            .iter()
            .map(|row| row.params)
            .filter(|&p| p > 0)
            .collect();
        assert_eq!(counts, vec![80, 584, 1_168, 2_320, 2_570]);
        assert_eq!(model.num_params(), PARAMETERS);
        assert!(model.num_params() <= 7_000);
    }

    #[test]
    fn biases_start_at_zero_and_kernels_within_glorot_bounds() {
        let device = Device::flex();
        device.seed(7);
        let model = Cnn::new(&device);
        let bias: Vec<f32> = model
            .conv2
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .try_to_vec_as()
            .unwrap();
        assert!(bias.iter().all(|&b| b == 0.0));
        // Glorot limit for conv2: sqrt(6 / (8*9 + 8*9)).
        let limit = (6.0f32 / 144.0).sqrt();
        let kernel: Vec<f32> = model
            .conv2
            .weight
            .val()
            .into_data()
            .try_to_vec_as()
            .unwrap();
        assert!(kernel.iter().all(|w| w.abs() <= limit));
        assert!(kernel.iter().any(|w| w.abs() > limit / 2.0));
    }

    #[test]
    fn forward_maps_a_batch_to_ten_probabilities_each() {
        let device = Device::flex();
        let model = Cnn::new(&device);
        let images = Tensor::<2>::ones([3, PIXELS], &device) * 0.5;
        let probs: Vec<f32> = model
            .probabilities(images)
            .into_data()
            .try_to_vec_as()
            .unwrap();
        assert_eq!(probs.len(), 3 * CLASSES);
        for row in probs.chunks(CLASSES) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
