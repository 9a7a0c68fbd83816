//! A look inside a network: its first convolution's filters and every convolution's activation
//! maps for one image. The forward pass here is plain Rust over a [`ModelWeights`], written
//! from the layers' definitions and independent of burn, so that it also serves as the
//! reference the burn forward pass is tested against (one image at a time, in eval mode:
//! batch norm's running statistics, no dropout).

use serde::Serialize;

use crate::model::{CLASSES, PIXELS};
use crate::network::{Activation, Layer, Output, Padding, Shape};
use crate::weights::{ModelWeights, Tensor32, WeightsError};

/// burn's (and Keras') default epsilon of batch normalisation, which the model keeps.
const NORM_EPSILON: f32 = 1e-5;

/// `count` images of `height` x `width` values each, one after the other.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Maps {
    /// The layer's Keras-style name (conv2d, conv2d_1, ...).
    pub layer: String,
    pub count: usize,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

/// What [`look_inside`] shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inside {
    /// The first convolution's filters (over the grey image: absent without convolutions).
    pub filters: Option<Maps>,
    /// Each convolution's output, after its activation.
    pub activations: Vec<Maps>,
    /// The network's class probabilities for the image.
    pub probabilities: Vec<f32>,
}

/// Channels-first values of one image (`[channels, height, width]`).
struct Image {
    channels: usize,
    height: usize,
    width: usize,
    values: Vec<f32>,
}

impl Image {
    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.values[(c * self.height + y) * self.width + x]
    }
}

fn activate(values: &mut [f32], activation: Activation) {
    if activation == Activation::Relu {
        values.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// Cross-correlation with zero padding of `pad` on every side, stride 1.
fn conv(x: &Image, weight: &Tensor32, bias: &Tensor32, pad: usize) -> Image {
    let (filters, kernel) = (weight.shape[0], weight.shape[2]);
    let height = x.height + 2 * pad + 1 - kernel;
    let width = x.width + 2 * pad + 1 - kernel;
    let mut values = Vec::with_capacity(filters * height * width);
    for f in 0..filters {
        for y in 0..height {
            for x_out in 0..width {
                let mut sum = bias.values[f];
                for c in 0..x.channels {
                    for ky in 0..kernel {
                        for kx in 0..kernel {
                            // Positions in the unpadded image; the padding reads zeros.
                            let (iy, ix) =
                                ((y + ky).wrapping_sub(pad), (x_out + kx).wrapping_sub(pad));
                            if iy < x.height && ix < x.width {
                                let w = weight.values
                                    [((f * x.channels + c) * kernel + ky) * kernel + kx];
                                sum += w * x.at(c, iy, ix);
                            }
                        }
                    }
                }
                values.push(sum);
            }
        }
    }
    Image {
        channels: filters,
        height,
        width,
        values,
    }
}

/// Pooling windows of `size` x `size`, stride `size`, the remainder dropped.
fn pool(x: &Image, size: usize, reduce: impl Fn(&mut dyn Iterator<Item = f32>) -> f32) -> Image {
    let (height, width) = (x.height / size, x.width / size);
    let mut values = Vec::with_capacity(x.channels * height * width);
    for c in 0..x.channels {
        for y in 0..height {
            for x_out in 0..width {
                let mut window =
                    (0..size * size).map(|i| x.at(c, y * size + i / size, x_out * size + i % size));
                values.push(reduce(&mut window));
            }
        }
    }
    Image {
        channels: x.channels,
        height,
        width,
        values,
    }
}

/// Normalises each channel (`values` holds `channels` runs of equal length).
fn normalise(values: &mut [f32], channels: usize, norm: [&Tensor32; 4]) {
    let [gamma, beta, mean, var] = norm.map(|t| &t.values);
    let run = values.len() / channels;
    for (c, chunk) in values.chunks_mut(run).enumerate() {
        let scale = gamma[c] / (var[c] + NORM_EPSILON).sqrt();
        chunk
            .iter_mut()
            .for_each(|v| *v = (*v - mean[c]) * scale + beta[c]);
    }
}

/// The filters, activation maps and probabilities of `weights` (checked here) for `pixels`
/// (784 values, row-major 28x28).
pub fn look_inside(weights: &ModelWeights, pixels: &[f32]) -> Result<Inside, WeightsError> {
    weights.validate()?;
    assert_eq!(pixels.len(), PIXELS, "the caller checks the image");
    let network = &weights.network;
    let names = network.names();
    let mut tensors = weights.tensors.iter();
    let mut next = || tensors.next().expect("validated against the layout");
    let Shape::Image { side_y, side_x, .. } = Shape::INPUT else {
        unreachable!("the input is an image")
    };
    let mut image = Some(Image {
        channels: 1,
        height: side_y,
        width: side_x,
        values: pixels.to_vec(),
    });
    let mut vector: Vec<f32> = Vec::new();
    let mut filters = None;
    let mut activations = Vec::new();
    for step in network.walk()? {
        let name = &names[step.index];
        match (step.layer, image.take()) {
            (
                &Layer::Conv2d {
                    kernel,
                    padding,
                    activation,
                    ..
                },
                Some(x),
            ) => {
                let (weight, bias) = (next(), next());
                // Only convolutions change the channels, so the first reads the grey image alone.
                if filters.is_none() {
                    filters = Some(Maps {
                        layer: name.clone(),
                        count: weight.shape[0],
                        height: kernel,
                        width: kernel,
                        values: weight.values.clone(),
                    });
                }
                let pad = match padding {
                    Padding::Valid => 0,
                    Padding::Same => (kernel - 1) / 2,
                };
                let mut y = conv(&x, weight, bias, pad);
                activate(&mut y.values, activation);
                activations.push(Maps {
                    layer: name.clone(),
                    count: y.channels,
                    height: y.height,
                    width: y.width,
                    values: y.values.clone(),
                });
                image = Some(y);
            }
            (&Layer::MaxPool2d { size }, Some(x)) => {
                image = Some(pool(&x, size, |w: &mut dyn Iterator<Item = f32>| {
                    w.fold(f32::NEG_INFINITY, f32::max)
                }));
            }
            (&Layer::AvgPool2d { size }, Some(x)) => {
                let count = (size * size) as f32;
                image = Some(pool(&x, size, |w: &mut dyn Iterator<Item = f32>| {
                    w.sum::<f32>() / count
                }));
            }
            (&Layer::GlobalAvgPool, Some(x)) => {
                let run = (x.height * x.width) as f32;
                vector = x
                    .values
                    .chunks(x.height * x.width)
                    .map(|c| c.iter().sum::<f32>() / run)
                    .collect();
            }
            (&Layer::Flatten, Some(x)) => vector = x.values,
            (&Layer::BatchNorm, Some(mut x)) => {
                normalise(&mut x.values, x.channels, [next(), next(), next(), next()]);
                image = Some(x);
            }
            (&Layer::BatchNorm, None) => {
                let channels = vector.len();
                normalise(&mut vector, channels, [next(), next(), next(), next()]);
            }
            // Dropout only acts in training.
            (&Layer::Dropout { .. }, x) => image = x,
            (&Layer::Dense { units, activation }, None) => {
                let (weight, bias) = (next(), next());
                let mut out = bias.values.clone();
                for (i, v) in vector.iter().enumerate() {
                    let row = &weight.values[i * units..(i + 1) * units];
                    out.iter_mut().zip(row).for_each(|(o, w)| *o += v * w);
                }
                activate(&mut out, activation);
                vector = out;
            }
            _ => unreachable!("a validated network"),
        }
    }
    debug_assert_eq!(vector.len(), CLASSES);
    let probabilities = match network.output {
        Output::Softmax => {
            let max = vector.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = vector.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.iter().map(|e| e / sum).collect()
        }
        Output::Sigmoid => {
            let each: Vec<f32> = vector.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
            let sum: f32 = each.iter().sum();
            each.iter().map(|e| e / sum).collect()
        }
    };
    Ok(Inside {
        filters,
        activations,
        probabilities,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use burn::prelude::*;

    use super::*;
    use crate::model::Cnn;
    use crate::network::{presets, Network, Shape};

    /// Weights of `network` from a seeded initialisation, with batch norm's four tensors and
    /// the biases moved off their initial 0s and 1s, so that a swapped or ignored tensor shows.
    fn weights(network: &Network, seed: u64) -> ModelWeights {
        let device = Device::flex();
        device.seed(seed);
        let model = Cnn::new(network, &device).unwrap();
        let mut weights = pollster::block_on(ModelWeights::read(&model)).unwrap();
        for (t, tensor) in weights.tensors.iter_mut().enumerate() {
            let varies = !tensor.name.ends_with(".weight");
            for (i, v) in tensor.values.iter_mut().enumerate().filter(|_| varies) {
                let wave = ((t * 31 + i * 7) % 13) as f32 / 13.0;
                *v = if tensor.name.ends_with(".running_var") {
                    0.5 + wave
                } else {
                    *v + wave - 0.5
                };
            }
        }
        weights
    }

    /// Strokes of different weights over a dark background, in [0, 1].
    fn image(shift: usize) -> Vec<f32> {
        (0..PIXELS)
            .map(|p| {
                let (y, x) = (p / 28, p % 28);
                if (6..22).contains(&y) && (x + y + shift) % 9 < 3 {
                    ((x * 3 + y) % 10) as f32 / 9.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn the_plain_forward_pass_agrees_with_burns() {
        let mut networks: Vec<Network> = presets().into_iter().map(|p| p.network).collect();
        // Every layer kind and option the presets leave out.
        networks.push(
            "batchnorm,conv-6-5-same-relu,avgpool-2,conv-5-1-valid-none,batchnorm,flatten,\
             dense-12-relu,batchnorm,dropout-0.2,dense-10-none,sigmoid"
                .parse()
                .unwrap(),
        );
        for (n, network) in networks.iter().enumerate() {
            let weights = weights(network, 11 + n as u64);
            let device = Device::flex();
            let model = weights.to_model(&device).unwrap();
            for shift in 0..3 {
                let pixels = image(shift);
                let inside = look_inside(&weights, &pixels).unwrap();
                let input = Tensor::<2>::from_data(TensorData::new(pixels, [1, PIXELS]), &device);
                let burn: Vec<f32> = model
                    .probabilities(input)
                    .into_data()
                    .try_to_vec_as()
                    .unwrap();
                let gap = burn
                    .iter()
                    .zip(&inside.probabilities)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                println!("{network}: largest difference {gap:e}");
                assert!(
                    gap < 1e-5,
                    "{network}: {burn:?} against {:?}",
                    inside.probabilities
                );
            }
        }
    }

    #[test]
    fn maps_follow_the_summary_shapes() {
        let network = Network::report();
        let inside = look_inside(&weights(&network, 3), &image(0)).unwrap();
        let filters = inside.filters.unwrap();
        assert_eq!(
            (
                filters.layer.as_str(),
                filters.count,
                filters.height,
                filters.width
            ),
            ("conv2d", 8, 3, 3)
        );
        assert_eq!(filters.values.len(), 8 * 9);
        let shapes: Vec<(String, Shape)> = network
            .walk()
            .unwrap()
            .into_iter()
            .filter(|step| matches!(step.layer, Layer::Conv2d { .. }))
            .map(|step| (network.names()[step.index].clone(), step.output))
            .collect();
        assert_eq!(inside.activations.len(), shapes.len());
        for (maps, (name, shape)) in inside.activations.iter().zip(shapes) {
            let Shape::Image {
                side_y,
                side_x,
                channels,
            } = shape
            else {
                panic!("a convolution makes an image")
            };
            assert_eq!(&maps.layer, &name);
            assert_eq!(
                (maps.count, maps.height, maps.width),
                (channels, side_y, side_x)
            );
            assert_eq!(maps.values.len(), channels * side_y * side_x);
            // ReLU outputs.
            assert!(maps.values.iter().all(|&v| v >= 0.0), "{name}");
        }
    }

    #[test]
    fn refuses_weights_that_do_not_fit_their_network() {
        let mut weights = weights(&Network::report(), 1);
        weights.tensors[1].values.pop();
        assert!(matches!(
            look_inside(&weights, &image(0)),
            Err(WeightsError::Layout { index: 1, .. })
        ));
    }
}
