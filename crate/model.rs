//! The burn module of a [`Network`] description: its learnable layers in order, and a forward
//! pass that walks the description.

use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

use crate::conv::conv3x3;
use crate::head::global_avg_pool;
use crate::network::{Activation, Layer, Network, NetworkError, Output, Padding};
use crate::norm::batch_norm;
use crate::pointwise::{self, conv1x1};

pub const IMAGE_SIDE: usize = 28;
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
pub const CLASSES: usize = 10;

/// A layer's learnable part, in the description's order (pools, dropout, flatten have none).
#[derive(Module, Debug)]
pub enum Learned {
    Conv(Conv2d),
    Norm(BatchNorm),
    Dense(Linear),
}

/// `forward` returns the last layer's values (logits); [`Cnn::probabilities`] applies the
/// output.
#[derive(Module, Debug)]
pub struct Cnn {
    pub learned: Vec<Learned>,
    #[module(skip)]
    network: Network,
}

/// What flows through the forward pass: images until Flatten or GlobalAvgPool, vectors after.
enum Values {
    Image(Tensor<4>),  // [batch, channels, height, width]
    Vector(Tensor<2>), // [batch, features]
}

/// Keras initialises kernels with Glorot-uniform and biases with zeros; burn's defaults differ.
fn glorot() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

fn zeros(n: usize, device: &Device) -> Option<Param<Tensor<1>>> {
    Some(Param::from_tensor(Tensor::zeros([n], device)))
}

fn activate<const D: usize>(x: Tensor<D>, activation: Activation) -> Tensor<D> {
    match activation {
        Activation::Relu => relu(x),
        Activation::None => x,
    }
}

impl Cnn {
    /// Folds this thread's pending batch-norm statistics into their running values. burn keeps
    /// an update per thread and averages the threads' at the next read, so steps that run on
    /// different pool threads (`crate::threads::in_pool`) would blend and skip updates: called
    /// at the end of every step, on its thread, each step reads the one before, as on one thread.
    pub fn settle_running_statistics(&self) {
        for learned in &self.learned {
            if let Learned::Norm(norm) = learned {
                norm.running_mean.value_sync();
                norm.running_var.value_sync();
            }
        }
    }

    /// Replaces every batch-norm layer's running statistics by their average over `batches`
    /// (images `[n, 784]` on this model's autodiff device), each batch weighing its images: the
    /// training forward pass folds batch k in with momentum `n_k / (n_1 + ... + n_k)`. Nothing
    /// else changes (the layers' momentum is restored); dropout, if any, runs as in training.
    pub fn average_norm_statistics(&mut self, batches: impl IntoIterator<Item = Tensor<2>>) {
        let momenta: Vec<f64> = self
            .learned
            .iter()
            .filter_map(|learned| match learned {
                Learned::Norm(norm) => Some(norm.momentum),
                _ => None,
            })
            .collect();
        if momenta.is_empty() {
            return;
        }
        let mut seen = 0usize;
        for images in batches {
            let [n, _] = images.dims();
            seen += n;
            self.set_norm_momenta(|_| n as f64 / seen as f64);
            let _ = self.forward(images);
            self.settle_running_statistics();
        }
        self.set_norm_momenta(|index| momenta[index]);
    }

    /// This model with each learned parameter replaced by `decay·average + (1 − decay)·itself`
    /// (`average`: a model of the same network) and a copy of its batch-norm running
    /// statistics. The result carries no autodiff history: it is read, never trained.
    pub fn averaged_into(&self, average: &Cnn, decay: f32) -> Cnn {
        fn blend<const D: usize>(
            own: &Param<Tensor<D>>,
            average: &Param<Tensor<D>>,
            decay: f32,
        ) -> Param<Tensor<D>> {
            let value =
                average.val().inner().mul_scalar(decay) + own.val().inner().mul_scalar(1.0 - decay);
            Param::initialized(own.id, Tensor::from_inner(value))
        }
        let blend_bias = |own: &Option<Param<Tensor<1>>>, average: &Option<Param<Tensor<1>>>| {
            own.as_ref()
                .zip(average.as_ref())
                .map(|(o, a)| blend(o, a, decay))
        };
        let mut result = self.clone();
        for (own, average) in result.learned.iter_mut().zip(&average.learned) {
            match (own, average) {
                (Learned::Conv(c), Learned::Conv(a)) => {
                    c.weight = blend(&c.weight, &a.weight, decay);
                    c.bias = blend_bias(&c.bias, &a.bias);
                }
                (Learned::Dense(d), Learned::Dense(a)) => {
                    d.weight = blend(&d.weight, &a.weight, decay);
                    d.bias = blend_bias(&d.bias, &a.bias);
                }
                (Learned::Norm(n), Learned::Norm(a)) => {
                    n.gamma = blend(&n.gamma, &a.gamma, decay);
                    n.beta = blend(&n.beta, &a.beta, decay);
                    // A clone shares its running statistics; the average's must be its own, so
                    // that statistics computed for it leave the trained model's alone.
                    n.running_mean = RunningState::new(n.running_mean.value());
                    n.running_var = RunningState::new(n.running_var.value());
                }
                _ => unreachable!("an average of the same network"),
            }
        }
        result
    }

    fn set_norm_momenta(&mut self, momentum: impl Fn(usize) -> f64) {
        let norms = self.learned.iter_mut().filter_map(|learned| match learned {
            Learned::Norm(norm) => Some(norm),
            _ => None,
        });
        for (index, norm) in norms.enumerate() {
            norm.momentum = momentum(index);
        }
    }

    /// A freshly initialised network on `device` (seed the device first for reproducibility).
    /// It refuses a network that cannot be built or does not end in 10 values (not the budget: a
    /// loaded file or the benchmark may exceed today's).
    pub fn new(network: &Network, device: &Device) -> Result<Self, NetworkError> {
        network.validate(usize::MAX)?;
        let learned = network
            .walk()?
            .into_iter()
            .filter_map(|step| match *step.layer {
                Layer::Conv2d {
                    filters,
                    kernel,
                    padding,
                    ..
                } => {
                    // 3x3 "same" is padded in `forward` so that it runs on the direct kernels.
                    let padding = if kernel == 3 || padding == Padding::Valid {
                        PaddingConfig2d::Valid
                    } else {
                        PaddingConfig2d::Same
                    };
                    let mut layer =
                        Conv2dConfig::new([step.input.channels(), filters], [kernel, kernel])
                            .with_padding(padding)
                            .with_initializer(glorot())
                            .init(device);
                    layer.bias = zeros(filters, device);
                    Some(Learned::Conv(layer))
                }
                // burn's (and PyTorch's) running-statistics momentum, 0.1, not Keras' 0.01: runs
                // in a tab are short, and with Keras' value the statistics of a one-epoch run
                // still lean on their initial 0 and 1 (validation accuracy 26% against 52% in
                // training, measured on the best7k candidate).
                Layer::BatchNorm => Some(Learned::Norm(
                    BatchNormConfig::new(step.input.channels()).init(device),
                )),
                Layer::Dense { units, .. } => {
                    let mut layer = LinearConfig::new(step.input.len(), units)
                        .with_initializer(glorot())
                        .init(device);
                    layer.bias = zeros(units, device);
                    Some(Learned::Dense(layer))
                }
                _ => None,
            })
            .collect();
        Ok(Self {
            learned,
            network: network.clone(),
        })
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Images `[batch, 784]` in [0, 1] to the last layer's values `[batch, 10]`. Dropout and
    /// batch statistics are used only on an autodiff device (training); `valid()` models use
    /// the running statistics and skip dropout.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        let [batch, _] = images.dims();
        let mut x = Values::Image(images.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]));
        let mut learned = self.learned.iter();
        for layer in &self.network.layers {
            x = match (layer, x) {
                (
                    Layer::Conv2d {
                        kernel,
                        padding,
                        activation,
                        ..
                    },
                    Values::Image(x),
                ) => {
                    let Some(Learned::Conv(conv)) = learned.next() else {
                        unreachable!("built from the same description")
                    };
                    Values::Image(match (kernel, padding) {
                        (3, Padding::Same) => {
                            conv3x3(conv, x.pad([(1, 1), (1, 1)], 0.0), *activation)
                        }
                        (3, Padding::Valid) => conv3x3(conv, x, *activation),
                        (1, _) => activate(conv1x1(conv, x), *activation),
                        _ => activate(conv.forward(x), *activation),
                    })
                }
                (Layer::MaxPool2d { size }, Values::Image(x)) => {
                    Values::Image(max_pool2d(x, MaxPoolOptions::new([*size; 2])))
                }
                (Layer::AvgPool2d { size }, Values::Image(x)) => {
                    Values::Image(avg_pool2d(x, AvgPoolOptions::new([*size; 2])))
                }
                (Layer::GlobalAvgPool, Values::Image(x)) => {
                    // [batch, channels, h, w] -> [batch, channels]
                    Values::Vector(global_avg_pool(x))
                }
                (Layer::Flatten, Values::Image(x)) => Values::Vector(x.flatten(1, 3)),
                (Layer::BatchNorm, x) => {
                    let Some(Learned::Norm(norm)) = learned.next() else {
                        unreachable!("built from the same description")
                    };
                    match x {
                        Values::Image(x) => Values::Image(batch_norm(norm, x)),
                        Values::Vector(x) => Values::Vector(batch_norm(norm, x)),
                    }
                }
                (Layer::Dropout { rate }, Values::Image(x)) => {
                    Values::Image(DropoutConfig::new(*rate).init().forward(x))
                }
                (Layer::Dropout { rate }, Values::Vector(x)) => {
                    Values::Vector(DropoutConfig::new(*rate).init().forward(x))
                }
                (Layer::Dense { activation, .. }, Values::Vector(x)) => {
                    let Some(Learned::Dense(dense)) = learned.next() else {
                        unreachable!("built from the same description")
                    };
                    Values::Vector(activate(pointwise::dense(dense, x), *activation))
                }
                _ => unreachable!("the description was validated when the model was built"),
            };
        }
        match x {
            Values::Vector(x) => x,
            Values::Image(_) => unreachable!("a validated network ends in a vector"),
        }
    }

    /// Class probabilities `[batch, 10]`.
    pub fn probabilities(&self, images: Tensor<2>) -> Tensor<2> {
        let values = self.forward(images);
        match self.network.output {
            Output::Softmax => softmax(values, 1),
            Output::Sigmoid => {
                let each = sigmoid(values);
                let sum = each.clone().sum_dim(1);
                each / sum
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::network::{presets, BUDGET};

    fn count(model: &Cnn) -> usize {
        model
            .learned
            .iter()
            .map(|l| match l {
                Learned::Conv(c) => c.weight.num_params() + c.bias.as_ref().unwrap().num_params(),
                Learned::Norm(n) => n.gamma.num_params() + n.beta.num_params(),
                Learned::Dense(d) => d.weight.num_params() + d.bias.as_ref().unwrap().num_params(),
            })
            .sum()
    }

    /// The weight average against plain f32 arithmetic on the weights files' values: every
    /// learned tensor blended, the running statistics copied, and statistics computed for the
    /// average leaving the model's own alone (a clone shares them).
    #[test]
    fn a_weight_average_blends_every_learned_tensor_and_owns_its_statistics() {
        use crate::weights::ModelWeights;
        let device = Device::flex().autodiff();
        let network = crate::network::preset("best7k").unwrap();
        device.seed(1);
        let average = Cnn::new(&network, &device).unwrap();
        device.seed(2);
        let mut model = Cnn::new(&network, &device).unwrap();
        let pixels = (0..16 * PIXELS).map(|i| ((i * 7919) % 256) as f32 / 255.0);
        let images =
            Tensor::<2>::from_data(TensorData::new(pixels.collect(), [16, PIXELS]), &device);
        // Running statistics of the model's own, away from their initial values.
        model.average_norm_statistics([images.clone()]);
        let read = |m: &Cnn| pollster::block_on(ModelWeights::read(m)).unwrap();
        let (a, m) = (read(&average), read(&model));
        let decay = 0.75f32;
        let mut blended = model.averaged_into(&average, decay);
        let b = read(&blended);
        for ((bt, at), mt) in b.tensors.iter().zip(&a.tensors).zip(&m.tensors) {
            let expected: Vec<f32> = match bt.name.contains("running") {
                true => mt.values.clone(),
                false => (at.values.iter().zip(&mt.values))
                    .map(|(x, y)| decay * x + (1.0 - decay) * y)
                    .collect(),
            };
            assert_eq!(bt.values, expected, "{}", bt.name);
        }
        blended.average_norm_statistics([images.narrow(0, 0, 4)]);
        assert_ne!(read(&blended), b);
        assert_eq!(read(&model), m);
    }

    /// Training passes whose batch-norm updates come from different threads (as steps do when
    /// rayon's pool hands them out) leave the running statistics one thread leaves, once each
    /// pass settles its own; without that, burn blends the threads' updates.
    #[test]
    fn running_statistics_do_not_depend_on_the_thread() {
        let device = Device::flex().autodiff();
        let network = crate::network::preset("best7k").unwrap();
        let start = Cnn::new(&network, &device).unwrap();
        let weights = pollster::block_on(crate::weights::ModelWeights::read(&start)).unwrap();
        let pixels = (0..8 * PIXELS).map(|i| ((i * 7919) % 256) as f32 / 255.0);
        let images =
            Tensor::<2>::from_data(TensorData::new(pixels.collect(), [8, PIXELS]), &device);
        let statistics = |hop: bool| {
            let model = weights.to_model(&device).unwrap();
            for pass in 0..4 {
                let train = || {
                    let _ = model.forward(images.clone());
                    model.settle_running_statistics();
                };
                if hop && pass % 2 == 1 {
                    std::thread::scope(|s| {
                        s.spawn(train);
                    });
                } else {
                    train();
                }
            }
            model
                .learned
                .iter()
                .filter_map(|learned| match learned {
                    Learned::Norm(norm) => Some(
                        [norm.running_mean.value(), norm.running_var.value()]
                            .map(|t| t.into_data().try_to_vec::<f32>().unwrap()),
                    ),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let one = statistics(false);
        assert!(
            !one.is_empty() && one[0][0].iter().any(|&m| m != 0.0),
            "the statistics moved"
        );
        assert_eq!(statistics(true), one);
    }

    /// A first batch-norm layer sees the images themselves: its averaged statistics must be the
    /// mean of every pixel and the image-weighted mean of the batches' biased variances,
    /// computed here in f64 from the pixels.
    #[test]
    fn averaged_norm_statistics_weigh_each_batch_by_its_images() {
        let device = Device::flex().autodiff();
        let network: Network = "batchnorm,conv-10-3-valid-none,gap,softmax"
            .parse()
            .unwrap();
        let mut model = Cnn::new(&network, &device).unwrap();
        let pixels: Vec<f32> = (0..8 * PIXELS)
            .map(|i| ((i * 7919 + i / PIXELS * 31) % 256) as f32 / 255.0)
            .collect();
        let (first, second) = pixels.split_at(5 * PIXELS);
        let batch = |values: &[f32]| {
            Tensor::<2>::from_data(
                TensorData::new(values.to_vec(), [values.len() / PIXELS, PIXELS]),
                &device,
            )
        };
        model.average_norm_statistics([batch(first), batch(second)]);

        let moments = |values: &[f32]| {
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            let variance = values
                .iter()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum::<f64>()
                / n;
            (mean, variance)
        };
        let (mean_1, variance_1) = moments(first);
        let (mean_2, variance_2) = moments(second);
        let expected_mean = (5.0 * mean_1 + 3.0 * mean_2) / 8.0;
        let expected_variance = (5.0 * variance_1 + 3.0 * variance_2) / 8.0;
        let Learned::Norm(norm) = &model.learned[0] else {
            panic!("the first layer is batch norm")
        };
        let read = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap()[0] as f64;
        let (mean, variance) = (
            read(norm.running_mean.value()),
            read(norm.running_var.value()),
        );
        println!("mean {mean} (expected {expected_mean}), variance {variance} (expected {expected_variance})");
        assert!(
            (mean - expected_mean).abs() < 1e-6,
            "{mean} vs {expected_mean}"
        );
        assert!(
            (variance - expected_variance).abs() < 1e-6,
            "{variance} vs {expected_variance}"
        );
        assert_eq!(norm.momentum, 0.1, "the layer's own momentum is back");
    }

    #[test]
    fn every_preset_builds_with_the_parameters_its_summary_counts() {
        let device = Device::flex();
        for preset in presets() {
            let model = Cnn::new(&preset.network, &device).unwrap();
            let (summary, error) = preset.network.summary(BUDGET);
            assert_eq!(error, None);
            assert_eq!(count(&model), summary.total, "{}", preset.id);
            let images = Tensor::<2>::ones([3, PIXELS], &device) * 0.5;
            assert_eq!(model.forward(images).dims(), [3, CLASSES], "{}", preset.id);
        }
    }

    #[test]
    fn biases_start_at_zero_and_kernels_within_glorot_bounds() {
        let device = Device::flex();
        device.seed(7);
        let model = Cnn::new(&Network::report(), &device).unwrap();
        let Learned::Conv(conv2) = &model.learned[1] else {
            panic!("the report's second layer is a convolution")
        };
        let bias: Vec<f32> = conv2
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
        let kernel: Vec<f32> = conv2.weight.val().into_data().try_to_vec_as().unwrap();
        assert!(kernel.iter().all(|w| w.abs() <= limit));
        assert!(kernel.iter().any(|w| w.abs() > limit / 2.0));
    }

    #[test]
    fn probabilities_sum_to_one_for_both_outputs() {
        let device = Device::flex();
        for output in [Output::Softmax, Output::Sigmoid] {
            let network = Network {
                output,
                ..presets()[1].network.clone()
            };
            let model = Cnn::new(&network, &device).unwrap();
            let images = Tensor::<2>::ones([3, PIXELS], &device) * 0.5;
            let probs: Vec<f32> = model
                .probabilities(images)
                .into_data()
                .try_to_vec_as()
                .unwrap();
            assert_eq!(probs.len(), 3 * CLASSES);
            for row in probs.chunks(CLASSES) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{output:?}");
            }
        }
    }

    #[test]
    fn same_padding_keeps_the_side_for_every_kernel() {
        let device = Device::flex();
        for kernel in [1, 3, 5] {
            let network: Network =
                format!("conv-4-{kernel}-same-relu,conv-10-1-valid-none,gap,softmax")
                    .parse()
                    .unwrap();
            let model = Cnn::new(&network, &device).unwrap();
            let Learned::Conv(conv) = &model.learned[0] else {
                panic!("a convolution")
            };
            let x = Tensor::<4>::ones([2, 1, IMAGE_SIDE, IMAGE_SIDE], &device);
            let y = match kernel {
                3 => conv3x3(conv, x.pad([(1, 1), (1, 1)], 0.0), Activation::Relu),
                _ => conv.forward(x),
            };
            assert_eq!(y.dims(), [2, 4, IMAGE_SIDE, IMAGE_SIDE], "kernel {kernel}");
        }
    }
}
