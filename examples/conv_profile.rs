//! Where a CPU training batch goes: each 3x3 convolution of a network (the report's, or one
//! given in the text form links carry) timed alone on burn's `flex` backend at batch 128, forward
//! and backward (weight gradient, and input gradient where training needs one), once as burn's
//! own `conv2d` and once as the direct 3x3 op (`mnist7k::conv::conv3x3`).
//!
//! `cargo run --profile quick --example conv_profile [-- PRESET | NETWORK]` (numbers in the
//! README's benchmark section).

use std::time::Instant;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::Distribution;
use mnist7k::conv::conv3x3;
use mnist7k::network::{preset, Activation, Layer, Network, Padding, Shape};

const BATCH: usize = 128;

/// The network's 3x3 convolutions: name, input channels, output channels, input side, padding.
fn conv_layers(network: &Network) -> Vec<(String, usize, usize, usize, Padding)> {
    let names = network.names();
    network
        .walk()
        .expect("a buildable network")
        .into_iter()
        .filter_map(|step| match (step.layer, step.input) {
            (
                Layer::Conv2d {
                    filters,
                    kernel: 3,
                    padding,
                    ..
                },
                Shape::Image {
                    side_y, channels, ..
                },
            ) => Some((
                names[step.index].clone(),
                channels,
                *filters,
                side_y,
                *padding,
            )),
            _ => None,
        })
        .collect()
}

/// Median wall time of `f` in milliseconds, after two warm-up calls.
fn median_ms(mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Forward (graph recorded, not run backward) and backward times of `forward`, reading every
/// gradient training needs.
fn forward_backward(
    conv: &Conv2d,
    x: &Tensor<4>,
    needs_input_grad: bool,
    forward: impl Fn(Tensor<4>) -> Tensor<4>,
) -> (f64, f64) {
    let forward_only = median_ms(|| {
        let _ = forward(x.clone()).into_data();
    });
    let both = median_ms(|| {
        let grads = forward(x.clone()).sum().backward();
        let _ = conv
            .weight
            .grad(&grads)
            .expect("weight gradient")
            .into_data();
        if needs_input_grad {
            let _ = x.grad(&grads).expect("input gradient").into_data();
        }
    });
    (forward_only, both - forward_only)
}

fn main() {
    // A preset's name or a network's text form.
    let network: Network = match std::env::args().nth(1) {
        Some(arg) => preset(&arg)
            .or_else(|_| arg.parse())
            .unwrap_or_else(|e| panic!("{arg:?} is neither a preset nor a network: {e}")),
        None => Network::report(),
    };
    let device = Device::flex().autodiff();
    let mut totals = [0.0f64; 4];
    println!("{BATCH} images per batch, flex backend, median of 15 runs (ms)");
    let layers = conv_layers(&network);
    for (name, inputs, outputs, side, padding) in &layers {
        let (inputs, outputs, side) = (*inputs, *outputs, *side);
        let conv = Conv2dConfig::new([inputs, outputs], [3, 3]).init(&device);
        let same = *padding == Padding::Same;
        let mut padded = conv.clone();
        padded.padding = PaddingConfig2d::Same;
        // The images themselves need no gradient: conv1 computes only its weight gradient.
        let needs_input_grad = inputs > 1;
        let mut x =
            Tensor::<4>::random([BATCH, inputs, side, side], Distribution::Default, &device);
        if needs_input_grad {
            x = x.require_grad();
        }
        let out_side = if same { side } else { side - 2 };
        let macs = (BATCH * out_side.pow(2) * outputs * inputs * 9) as f64;
        let (fwd, bwd) = forward_backward(&conv, &x, needs_input_grad, |x| match same {
            true => padded.forward(x),
            false => conv.forward(x),
        });
        let (d_fwd, d_bwd) = forward_backward(&conv, &x, needs_input_grad, |x| match same {
            true => conv3x3(&conv, x.pad([(1, 1), (1, 1)], 0.0), Activation::None),
            false => conv3x3(&conv, x, Activation::None),
        });
        for (total, time) in totals.iter_mut().zip([fwd, bwd, d_fwd, d_bwd]) {
            *total += time;
        }
        let backward_macs = if needs_input_grad { 2.0 } else { 1.0 } * macs;
        let gflops = |macs: f64, ms: f64| 2.0 * macs / ms / 1e6;
        println!(
            "{name}: burn conv2d forward {fwd:6.2} ({:5.2} GFLOP/s), backward {bwd:6.2} ({:5.2}) | conv3x3 forward {d_fwd:6.2} ({:5.2}), backward {d_bwd:6.2} ({:5.2})",
            gflops(macs, fwd),
            gflops(backward_macs, bwd),
            gflops(macs, d_fwd),
            gflops(backward_macs, d_bwd),
        );
    }
    println!(
        "all {}, per batch: burn conv2d forward {:.1} ms, backward {:.1} ms | conv3x3 forward {:.1} ms, backward {:.1} ms",
        layers.len(),
        totals[0],
        totals[1],
        totals[2],
        totals[3]
    );
}
