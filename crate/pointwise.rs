//! 1x1 convolutions and dense layers as one backend op with a hand-written backward pass: both
//! map each position's `c_in` values to `c_out` through one `[c_out, c_in]` matrix (a dense layer
//! is a 1x1 convolution of a 1x1 image).
//!
//! burn's `flex` runs them through `gemm`, which takes a fused multiply-add kernel where the CPU
//! has FMA and separate ones in the browser, and sums bias gradients with reductions as wide as
//! the CPU's vectors: the same seed trained differently natively and in a tab. Here every sum
//! runs in one fixed order (products summed over `c_in` in order; the weight and bias gradients
//! through `crate::cpu::sum_rows`), each on one thread: the same bits on any machine and any
//! number of threads. At MNIST sizes (the best7k head's 14 -> 10, the report's 256 -> 10) the
//! plain loops are as fast as `gemm`'s packing.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ConvOptions;
use burn::backend::tensor::FloatTensor;
#[cfg(not(threads))]
use burn::backend::Cube;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::tensor::{Shape, Tensor};

use crate::cpu::{f32s, flex, is_f32};

/// `layer` applied to `x` `[batch, c_in, h, w]`, through the op below when it is 1x1, stride 1,
/// unpadded (or "same", which pads a 1x1 kernel by nothing) and with a bias; through burn's
/// `Conv2d` otherwise.
pub fn conv1x1(layer: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let plain = layer.kernel_size == [1, 1]
        && layer.stride == [1, 1]
        && layer.dilation == [1, 1]
        && layer.groups == 1
        && matches!(
            layer.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Same
        );
    match &layer.bias {
        Some(bias) if plain => {
            let [batch, c_in, h, w] = x.dims();
            let [c_out, ..] = layer.weight.dims();
            let x = x.reshape([batch, c_in, h * w]); // [batch, c_in, h * w]
            let weight = layer.weight.val().reshape([c_out, c_in]); // [c_out, c_in]
            pointwise(x, weight, bias.val()).reshape([batch, c_out, h, w])
        }
        _ => layer.forward(x),
    }
}

/// `layer` applied to `x` `[batch, inputs]`, through the op below when it has a bias.
pub fn dense(layer: &Linear, x: Tensor<2>) -> Tensor<2> {
    match &layer.bias {
        Some(bias) => {
            let [batch, inputs] = x.dims();
            let weight = layer.weight.val().transpose(); // [outputs, inputs]
            let [outputs, _] = weight.dims();
            let x = x.reshape([batch, inputs, 1]); // [batch, inputs, 1]
            pointwise(x, weight, bias.val()).reshape([batch, outputs])
        }
        None => layer.forward(x),
    }
}

/// `[batch, c_in, plane]` through `weight` `[c_out, c_in]` plus `bias` `[c_out]`.
fn pointwise(x: Tensor<3>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<3> {
    Tensor::from_dispatch(Dispatch::pointwise(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// burn's own ops, as a convolution of `[batch, c_in, plane, 1]` images: what every backend but
/// `flex` (f32) runs.
mod reference {
    use super::*;

    fn image<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let shape = x.shape();
        B::float_reshape(x, Shape::new([shape[0], shape[1], shape[2], 1]))
    }

    fn kernel<B: Backend>(weight: FloatTensor<B>) -> FloatTensor<B> {
        let shape = weight.shape();
        B::float_reshape(weight, Shape::new([shape[0], shape[1], 1, 1]))
    }

    fn options() -> ConvOptions<2> {
        ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
    }

    pub fn forward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let shape = x.shape();
        let c_out = weight.shape()[0];
        let out = B::conv2d(image::<B>(x), kernel::<B>(weight), Some(bias), options());
        B::float_reshape(out, Shape::new([shape[0], c_out, shape[2]]))
    }

    pub fn backward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> Grads<B> {
        let (x_shape, w_shape) = (x.shape(), weight.shape());
        let (x, weight, grad) = (image::<B>(x), kernel::<B>(weight), image::<B>(grad));
        let dx = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options());
        let dw = B::conv2d_weight_backward(x, weight, grad.clone(), options());
        let db = B::float_sum_dims(grad, &[0, 2, 3]);
        (
            B::float_reshape(dx, x_shape),
            B::float_reshape(dw, w_shape.clone()),
            B::float_reshape(db, Shape::new([w_shape[0]])),
        )
    }
}

/// The gradients with respect to the input, the weights and the bias.
type Grads<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// `[batch, c_in, plane]` through a `[c_out, c_in]` matrix plus a bias, and its gradients. The
/// trait spells the tuple out: `backend_extension` maps each of its parts and cannot see
/// through an alias.
#[backend_extension(Flex, Cube: cfg(not(threads)), Autodiff)]
pub trait PointwiseBackend: Backend {
    fn pointwise(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::forward::<Self>(x, weight, bias)
    }

    fn pointwise_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::backward::<Self>(x, weight, grad)
    }
}

/// WebGPU (and native wgpu): burn's kernels.
#[cfg(not(threads))]
impl PointwiseBackend for Cube {}

/// The kernels below where everything is f32; burn's ops otherwise.
impl PointwiseBackend for Flex {
    fn pointwise(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        match Sizes::of(&x, &weight) {
            Some(s) if is_f32(&bias) && bias.shape().num_elements() == s.c_out => {
                let out = kernels::forward(s, &f32s(&x), &f32s(&weight), &f32s(&bias));
                flex(out, [s.batch, s.c_out, s.plane])
            }
            _ => reference::forward::<Self>(x, weight, bias),
        }
    }

    fn pointwise_backward(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> Grads<Self> {
        match Sizes::of(&x, &weight) {
            Some(s) if is_f32(&grad) => {
                let (dx, dw, db) = kernels::backward(s, &f32s(&x), &f32s(&weight), &f32s(&grad));
                (
                    flex(dx, [s.batch, s.c_in, s.plane]),
                    flex(dw, [s.c_out, s.c_in]),
                    flex(db, [s.c_out]),
                )
            }
            _ => reference::backward::<Self>(x, weight, grad),
        }
    }
}

/// Input `[batch, c_in, plane]`, weight `[c_out, c_in]`.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    batch: usize,
    c_in: usize,
    c_out: usize,
    plane: usize,
}

impl Sizes {
    fn of(x: &FlexTensor, weight: &FlexTensor) -> Option<Self> {
        let (xs, ws) = (x.shape(), weight.shape());
        let fits = is_f32(x)
            && is_f32(weight)
            && xs.num_dims() == 3
            && ws.num_dims() == 2
            && xs[1] == ws[1]
            && xs.num_elements() > 0
            && ws.num_elements() > 0;
        fits.then(|| Self {
            batch: xs[0],
            c_in: xs[1],
            c_out: ws[0],
            plane: xs[2],
        })
    }
}

/// Plain-slice kernels, f32: images in parallel for the outputs and the input gradient, one
/// output channel per task for the weight and bias gradients.
mod kernels {
    use super::Sizes;
    use crate::cpu::sum_rows;
    use crate::threads::for_each_part;

    /// `out[co] = bias[co] + sum over ci in order of weight[co, ci] * x[ci]`, a plane at a time.
    pub fn forward(s: Sizes, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; s.batch * s.c_out * s.plane];
        let image_in = s.c_in * s.plane;
        if s.plane == 1 {
            // A dense layer: the same sums in the same order, all outputs at once (the weights
            // transposed to `[c_in, c_out]`), which vectorises where one output at a time
            // could not.
            let mut transposed = vec![0.0; weight.len()];
            for (i, w) in weight.iter().enumerate() {
                transposed[(i % s.c_in) * s.c_out + i / s.c_in] = *w;
            }
            for_each_part(&mut out, s.c_out, |n, outputs| {
                outputs.copy_from_slice(bias);
                for (ci, &v) in x[n * image_in..][..image_in].iter().enumerate() {
                    let weights = &transposed[ci * s.c_out..][..s.c_out];
                    outputs
                        .iter_mut()
                        .zip(weights)
                        .for_each(|(o, w)| *o += w * v);
                }
            });
            return out;
        }
        for_each_part(&mut out, s.c_out * s.plane, |n, image| {
            let input = &x[n * image_in..][..image_in];
            for (co, row) in image.chunks_exact_mut(s.plane).enumerate() {
                row.fill(bias[co]);
                for (ci, plane) in input.chunks_exact(s.plane).enumerate() {
                    let w = weight[co * s.c_in + ci];
                    row.iter_mut().zip(plane).for_each(|(o, v)| *o += w * v);
                }
            }
        });
        out
    }

    /// `dx[ci] = sum over co in order of weight[co, ci] * grad[co]`;
    /// `dw[co, ci] = sum over n of (sum over p of grad[n, co, p] * x[n, ci, p])` and
    /// `db[co]` likewise of `grad[n, co, p]`.
    pub fn backward(
        s: Sizes,
        x: &[f32],
        weight: &[f32],
        grad: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (image_in, image_out) = (s.c_in * s.plane, s.c_out * s.plane);
        let mut dx = vec![0.0; s.batch * image_in];
        for_each_part(&mut dx, image_in, |n, image| {
            let grad = &grad[n * image_out..][..image_out];
            if s.plane == 1 {
                // A dense layer: the same sums in the same order, all inputs at once.
                for (co, &g) in grad.iter().enumerate() {
                    let weights = &weight[co * s.c_in..][..s.c_in];
                    image.iter_mut().zip(weights).for_each(|(d, w)| *d += w * g);
                }
                return;
            }
            for (ci, row) in image.chunks_exact_mut(s.plane).enumerate() {
                for (co, plane) in grad.chunks_exact(s.plane).enumerate() {
                    let w = weight[co * s.c_in + ci];
                    row.iter_mut().zip(plane).for_each(|(o, g)| *o += w * g);
                }
            }
        });
        // Per output channel: its weights' gradients, then its bias's, each summed over a
        // plane (`sum_rows`), then over the images in order, reading each image's rows in turn.
        let mut sums = vec![0.0; s.c_out * (s.c_in + 1)];
        for_each_part(&mut sums, s.c_in + 1, |co, part| {
            for n in 0..s.batch {
                let g = row(s, grad, s.c_out, n, co);
                if s.plane == 1 {
                    // A dense layer: `sum_rows` of one pair is its product, so the same bits
                    // come from all inputs at once.
                    let image = &x[n * s.c_in..][..s.c_in];
                    let sums = part[..s.c_in].iter_mut().zip(image);
                    sums.for_each(|(sum, v)| *sum += g[0] * v);
                } else {
                    for (ci, sum) in part[..s.c_in].iter_mut().enumerate() {
                        let once = std::iter::once((g, row(s, x, s.c_in, n, ci)));
                        *sum += sum_rows(once, |g, v| g * v, |g, v| g * v);
                    }
                }
                part[s.c_in] += sum_rows(std::iter::once((g, g)), |g, _| g, |g, _| g);
            }
        });
        let (dw, db) = sums
            .chunks_exact(s.c_in + 1)
            .map(|part| (&part[..s.c_in], part[s.c_in]))
            .fold((Vec::new(), Vec::new()), |(mut dw, mut db), (w, b)| {
                dw.extend_from_slice(w);
                db.push(b);
                (dw, db)
            });
        (dx, dw, db)
    }

    /// Channel `c` of image `n` in `values` `[batch, channels, plane]`.
    fn row(s: Sizes, values: &[f32], channels: usize, n: usize, c: usize) -> &[f32] {
        &values[(n * channels + c) * s.plane..][..s.plane]
    }
}

/// Training: one autodiff node whose backward pass is the gradient op.
impl<B: PointwiseBackend, C: CheckpointStrategy> PointwiseBackend for Autodiff<B, C> {
    fn pointwise(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PointwiseBackward;

        impl<B: PointwiseBackend> Backward<B, 3> for PointwiseBackward {
            /// The input and the weights.
            type State = (NodeId, NodeId);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_weight, node_bias] = ops.parents;
                let (x_state, weight_state) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
                let (dx, dw, db) = B::pointwise_backward(x, weight, grad);
                for (node, grad) in [(node_x, dx), (node_weight, dw), (node_bias, db)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        match PointwiseBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let state = (prep.checkpoint(&x), prep.checkpoint(&weight));
                let out = B::pointwise(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::pointwise(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            )),
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cpu::testing::{self, values};
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::LinearConfig;
    use burn::prelude::Device;
    use burn::tensor::Distribution;

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        testing::assert_close(a, b, 1e-4, what)
    }

    /// The output `y` of a layer with `weight` and `bias` applied to `x`, and the gradients of
    /// `sum(y * mix)` with respect to `x`, the weights and the bias.
    fn outcome<const D: usize, const W: usize>(
        y: Tensor<D>,
        x: &Tensor<D>,
        weight: Tensor<W>,
        bias: Tensor<1>,
        mix: &Tensor<D>,
    ) -> [Vec<f32>; 4] {
        let grads = (y.clone() * mix.clone()).sum().backward();
        [
            values(y),
            values(x.grad(&grads).unwrap()),
            values(weight.grad(&grads).unwrap()),
            values(bias.grad(&grads).unwrap()),
        ]
    }

    /// 1x1 convolutions (odd planes: lanes and scalar tails) and dense layers give burn's
    /// values and gradients, to rounding.
    #[test]
    fn matches_burn_conv2d_and_linear() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let check = |run: &dyn Fn(bool) -> [Vec<f32>; 4], what: &str| {
            let (ours, theirs) = (run(true), run(false));
            for ((a, b), name) in ours.iter().zip(&theirs).zip(["output", "dx", "dw", "db"]) {
                assert_close(a, b, &format!("{what} {name}"));
            }
        };
        for [batch, c_in, c_out, side] in [[5, 14, 10, 5], [3, 2, 7, 1], [130, 6, 3, 7]] {
            let layer = Conv2dConfig::new([c_in, c_out], [1, 1]).init(&device);
            let shape = [batch, c_in, side, side];
            let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 2.0), &device);
            let out = [batch, c_out, side, side];
            let mix = Tensor::<4>::random(out, Distribution::Default, &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = match ours {
                    true => conv1x1(&layer, x.clone()),
                    false => layer.forward(x.clone()),
                };
                let bias = layer.bias.as_ref().unwrap().val();
                outcome(y, &x, layer.weight.val(), bias, &mix)
            };
            check(&run, &format!("1x1 {shape:?} -> {c_out}"));
        }
        for [batch, inputs, outputs] in [[128, 256, 10], [3, 5, 7]] {
            let layer = LinearConfig::new(inputs, outputs).init(&device);
            let x = Tensor::<2>::random([batch, inputs], Distribution::Default, &device);
            let mix = Tensor::<2>::random([batch, outputs], Distribution::Default, &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = match ours {
                    true => dense(&layer, x.clone()),
                    false => layer.forward(x.clone()),
                };
                let bias = layer.bias.as_ref().unwrap().val();
                outcome(y, &x, layer.weight.val(), bias, &mix)
            };
            check(&run, &format!("dense {inputs} -> {outputs}"));
        }
    }
}
