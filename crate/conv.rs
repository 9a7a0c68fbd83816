//! 3x3 "valid" convolutions (stride 1, with bias, optionally followed by ReLU) as one backend op
//! with a hand-written backward pass; "same" padding pads the input first (`crate::model`), so
//! every 3x3 layer a design can hold runs here.
//!
//! burn 0.22's `flex` turns every convolution into layout copies, im2col and a small gemm, and
//! its backward pass into a transposed convolution plus a convolution with batch and channels
//! swapped: at 1 to 16 channels that ran at 1-15 GFLOP/s and made up nearly all of a training
//! step. Here the CPU path is a direct convolution whose inner loop is one output row held in
//! registers (a const-generic width, so it vectorises to SIMD128 in the browser and SSE/AVX
//! natively); other backends (WebGPU) and other dtypes keep burn's own convolution ops.
//!
//! The op is a burn backend extension: [`Conv3x3Backend`] is implemented for `Flex` (the fast
//! kernels), for the cubecl backend (burn's ops) and for `Autodiff` (the backward pass below),
//! and [`conv3x3`] reaches it through burn's runtime dispatch.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{ActivationOps, ConvOptions};
use burn::backend::tensor::FloatTensor;
#[cfg(not(threads))]
use burn::backend::Cube;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::activation::relu;
use burn::tensor::{Shape, Tensor};

use crate::cpu::{f32s, flex, is_f32};
use crate::network::Activation;

/// `layer` applied to `x` `[batch, c_in, h, w]`, then `activation`: through the ops below when the
/// layer is 3x3, stride 1, unpadded and with a bias, through burn's `Conv2d` otherwise. On the
/// CPU the ReLU is applied while an image's output is still in cache, on every thread, and its
/// backward pass masks the gradient likewise: burn's `flex` runs both as separate passes over the
/// whole batch on one thread, which held the other threads idle.
pub fn conv3x3(layer: &Conv2d, x: Tensor<4>, activation: Activation) -> Tensor<4> {
    let plain = layer.kernel_size == [3, 3]
        && layer.stride == [1, 1]
        && layer.dilation == [1, 1]
        && layer.groups == 1
        && layer.padding == PaddingConfig2d::Valid;
    let (x, weight) = (x.into_dispatch(), layer.weight.val().into_dispatch());
    match (&layer.bias, activation) {
        (Some(bias), Activation::None) if plain => {
            Tensor::from_dispatch(Dispatch::conv3x3(x, weight, bias.val().into_dispatch()))
        }
        (Some(bias), Activation::Relu) if plain => Tensor::from_dispatch(Dispatch::conv3x3_relu(
            x,
            weight,
            bias.val().into_dispatch(),
        )),
        (_, activation) => {
            let y = layer.forward(Tensor::from_dispatch(x));
            match activation {
                Activation::Relu => relu(y),
                Activation::None => y,
            }
        }
    }
}

fn valid() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

/// burn's own ops: what every backend but `flex` (f32) runs.
mod reference {
    use super::*;

    pub fn forward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> FloatTensor<B> {
        B::conv2d(x, weight, Some(bias), valid())
    }

    /// The gradients with respect to the input (if `input_grad`), the weights and the bias.
    pub fn backward<B: Backend>(
        x: FloatTensor<B>,
        weight: FloatTensor<B>,
        grad: FloatTensor<B>,
        input_grad: bool,
    ) -> Grads<B> {
        let dx = input_grad
            .then(|| B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), valid()));
        let dw = B::conv2d_weight_backward(x, weight, grad.clone(), valid());
        let channels = grad.shape()[1];
        let db = B::float_reshape(B::float_sum_dims(grad, &[0, 2, 3]), Shape::new([channels]));
        (dx, dw, db)
    }
}

/// The input's gradient (when asked for), the weights' and the bias's. The trait below spells
/// the tuple out: `backend_extension` maps each of its parts between backends and cannot see
/// through an alias.
type Grads<B> = (Option<FloatTensor<B>>, FloatTensor<B>, FloatTensor<B>);

/// A valid 3x3 convolution, stride 1, with bias (and ReLU, fused), and the parts of its gradient.
#[backend_extension(Flex, Cube: cfg(not(threads)), Autodiff)]
pub trait Conv3x3Backend: Backend {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::forward::<Self>(x, weight, bias)
    }

    fn conv3x3_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::relu(reference::forward::<Self>(x, weight, bias))
    }

    /// All of the convolution's gradients at once (on the CPU, one pass over the batch on every
    /// thread): the input's if `input_grad`, the weights', the bias's.
    fn conv3x3_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        input_grad: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        reference::backward::<Self>(x, weight, grad, input_grad)
    }

    /// The same after a ReLU whose output was `output`: `grad` is zero where `output` is.
    fn conv3x3_relu_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        output: FloatTensor<Self>,
        input_grad: bool,
    ) -> (
        Option<FloatTensor<Self>>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let grad = Self::relu_backward(output, grad);
        reference::backward::<Self>(x, weight, grad, input_grad)
    }
}

/// WebGPU (and native wgpu): burn's kernels.
#[cfg(not(threads))]
impl Conv3x3Backend for Cube {}

/// The direct kernels where the data is f32; burn's ops otherwise.
impl Conv3x3Backend for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        flex_forward(x, weight, bias, false)
    }

    fn conv3x3_relu(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        flex_forward(x, weight, bias, true)
    }

    fn conv3x3_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        input_grad: bool,
    ) -> Grads<Self> {
        match Geometry::of(&x, &weight) {
            Some(g) if is_f32(&grad) => flex_grads(g, &x, &weight, &grad, None, input_grad),
            _ => reference::backward::<Self>(x, weight, grad, input_grad),
        }
    }

    fn conv3x3_relu_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        output: FlexTensor,
        input_grad: bool,
    ) -> Grads<Self> {
        let masks = is_f32(&output) && output.shape() == grad.shape();
        match Geometry::of(&x, &weight) {
            Some(g) if is_f32(&grad) && masks => {
                flex_grads(g, &x, &weight, &grad, Some(&output), input_grad)
            }
            _ => {
                let grad = Self::relu_backward(output, grad);
                reference::backward::<Self>(x, weight, grad, input_grad)
            }
        }
    }
}

/// The direct kernels' output, through ReLU if `relu`; burn's ops where they do not apply.
fn flex_forward(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
    match Geometry::of(&x, &weight) {
        Some(g) if is_f32(&bias) => {
            let out = kernels::forward(g, &f32s(&x), &f32s(&weight), &f32s(&bias), relu);
            flex(out, [g.batch, g.c_out, g.height - 2, g.width - 2])
        }
        _ => {
            let out = reference::forward::<Flex>(x, weight, bias);
            if relu {
                Flex::relu(out)
            } else {
                out
            }
        }
    }
}

/// The direct kernels' gradients (see [`kernels::backward`]) as tensors.
fn flex_grads(
    g: Geometry,
    x: &FlexTensor,
    weight: &FlexTensor,
    grad: &FlexTensor,
    relu_output: Option<&FlexTensor>,
    input_grad: bool,
) -> Grads<Flex> {
    let output = relu_output.map(f32s);
    let grads = kernels::backward(
        g,
        &f32s(x),
        &f32s(weight),
        &f32s(grad),
        output.as_deref(),
        input_grad,
    );
    (
        grads
            .dx
            .map(|dx| flex(dx, [g.batch, g.c_in, g.height, g.width])),
        flex(grads.dw, [g.c_out, g.c_in, 3, 3]),
        flex(grads.db, [g.c_out]),
    )
}

/// The sizes of one convolution: input `[batch, c_in, height, width]`, weight `[c_out, c_in, 3, 3]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    batch: usize,
    c_in: usize,
    c_out: usize,
    height: usize,
    width: usize,
}

impl Geometry {
    fn of(x: &FlexTensor, weight: &FlexTensor) -> Option<Self> {
        let (xs, ws) = (x.shape(), weight.shape());
        let f32_3x3 = is_f32(x)
            && is_f32(weight)
            && xs.num_dims() == 4
            && ws.num_dims() == 4
            && ws[1] == xs[1]
            && ws[2] == 3
            && ws[3] == 3
            && xs[2] >= 3
            && xs[3] >= 3;
        f32_3x3.then(|| Self {
            batch: xs[0],
            c_in: xs[1],
            c_out: ws[0],
            height: xs[2],
            width: xs[3],
        })
    }
}

/// Plain-slice kernels, NCHW, f32; images are independent, so natively they run in parallel.
mod kernels {
    use super::Geometry;
    use crate::threads::{for_each_part, for_each_task};
    use wide::f32x4;

    /// Output rows are computed in blocks of `B` columns held in registers. Every width an
    /// MNIST network produces (up to 30, the padded input of a "same" layer's input gradient) is
    /// one block; wider rows run in blocks of 8, then 4, 2 and 1. Each output value sees the same
    /// additions in the same order whatever the blocks, so every width gives the same bits on
    /// every machine. `x0 => kernel(args)` names the block's first column in `args`.
    macro_rules! by_blocks {
        (@arms $width:ident, $x0:ident, $kernel:ident, $args:tt; $($n:literal)*) => {
            match $width {
                $($n => {
                    let $x0 = 0;
                    $kernel::<$n> $args
                })*
                _ => {
                    let mut $x0 = 0;
                    while $x0 + 8 <= $width {
                        $kernel::<8> $args;
                        $x0 += 8;
                    }
                    for block in [4, 2, 1] {
                        if $x0 + block <= $width {
                            match block {
                                4 => $kernel::<4> $args,
                                2 => $kernel::<2> $args,
                                _ => $kernel::<1> $args,
                            }
                            $x0 += block;
                        }
                    }
                }
            }
        };
        ($width:expr, $x0:ident => $kernel:ident $args:tt) => {{
            let width: usize = $width;
            by_blocks!(@arms width, $x0, $kernel, $args;
                1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30)
        }};
    }

    /// The weight gradient sums images in fixed groups, then the groups in order: the same
    /// additions in the same order natively (threads) and in the browser (one thread), so a seed
    /// gives the same run everywhere.
    const IMAGES_PER_SUM: usize = 16;

    /// `out[n, co] = bias[co] + sum over ci of x[n, ci] correlated with weight[co, ci]`, through
    /// ReLU if `relu`.
    pub(super) fn forward(
        g: Geometry,
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        relu: bool,
    ) -> Vec<f32> {
        let (oh, ow) = (g.height - 2, g.width - 2);
        let mut out = vec![0.0; g.batch * g.c_out * oh * ow];
        let image_in = g.c_in * g.height * g.width;
        for_each_part(&mut out, g.c_out * oh * ow, |n, image| {
            let input = &x[n * image_in..][..image_in];
            by_blocks!(
                ow,
                x0 => correlate(x0, ow, g.c_in, g.height, input, weight, bias, image)
            );
            if relu {
                for v in image.iter_mut().filter(|v| !passes_relu(**v)) {
                    *v = 0.0;
                }
            }
        });
        out
    }

    /// burn's ReLU: NaN goes through, as in PyTorch, so a diverging run still shows as one.
    #[inline(always)]
    fn passes_relu(v: f32) -> bool {
        v.is_nan() || v > 0.0
    }

    /// Columns `x0..x0 + B` of one image: `input` `[c_in, h, ow + 2]`, `weight`
    /// `[c_out, c_in, 3, 3]`, `out` `[c_out, h - 2, ow]`. Natively on a CPU with AVX2 the same
    /// loops run 8 lanes wide (the portable build targets SSE2): elementwise, so the results are
    /// the same bits either way.
    #[allow(clippy::too_many_arguments)]
    fn correlate<const B: usize>(
        x0: usize,
        ow: usize,
        c_in: usize,
        height: usize,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { correlate_avx2::<B>(x0, ow, c_in, height, input, weight, bias, out) };
        }
        correlate_rows::<B>(x0, ow, c_in, height, input, weight, bias, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    fn correlate_avx2<const B: usize>(
        x0: usize,
        ow: usize,
        c_in: usize,
        height: usize,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        correlate_rows::<B>(x0, ow, c_in, height, input, weight, bias, out)
    }

    /// Each block of an output row is accumulated in a `[f32; B]` that stays in registers
    /// across the 9 * c_in taps.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn correlate_rows<const B: usize>(
        x0: usize,
        ow: usize,
        c_in: usize,
        height: usize,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) {
        let width = ow + 2;
        let oh = height - 2;
        for (co, out_plane) in out.chunks_exact_mut(oh * ow).enumerate() {
            let kernel = &weight[co * c_in * 9..][..c_in * 9];
            for (y, out_row) in out_plane.chunks_exact_mut(ow).enumerate() {
                let mut acc = [bias[co]; B];
                for (ci, taps) in kernel.chunks_exact(9).enumerate() {
                    let plane = &input[ci * height * width..][..height * width];
                    for ky in 0..3 {
                        let row = &plane[(y + ky) * width + x0..][..B + 2];
                        for kx in 0..3 {
                            let tap = taps[ky * 3 + kx];
                            let src: &[f32; B] = row[kx..kx + B].try_into().unwrap();
                            for (a, s) in acc.iter_mut().zip(src) {
                                *a += tap * s;
                            }
                        }
                    }
                }
                out_row[x0..x0 + B].copy_from_slice(&acc);
            }
        }
    }

    /// A convolution's gradients: see [`backward`].
    pub(super) struct Grads {
        pub dx: Option<Vec<f32>>,
        pub dw: Vec<f32>,
        pub db: Vec<f32>,
    }

    /// All of a convolution's gradients in one parallel pass over groups of `IMAGES_PER_SUM`
    /// images (a pass per gradient woke the pool threads once more each, slow in Chromium; the
    /// cost: at most batch / 16 threads share the backward pass): each image's output gradient is
    /// masked by ReLU's output where one
    /// is given, its input gradient written if `input_grad`, its weight gradient added to its
    /// group's sum and its bias gradient (a sum per channel) kept; then the groups' sums are added
    /// in order, and the bias sums image by image. Each gradient sees the same additions in the
    /// same order as when each had a pass of its own.
    pub(super) fn backward(
        g: Geometry,
        x: &[f32],
        weight: &[f32],
        grad: &[f32],
        relu_output: Option<&[f32]>,
        input_grad: bool,
    ) -> Grads {
        let plane = (g.height - 2) * (g.width - 2);
        let (image_in, image_grad) = (g.c_in * g.height * g.width, g.c_out * plane);
        let len = g.c_out * g.c_in * 9;
        let groups = g.batch.div_ceil(IMAGES_PER_SUM);
        let flipped = input_grad.then(|| flip_kernel(g, weight));
        let mut dx = vec![0.0; if input_grad { g.batch * image_in } else { 0 }];
        let mut partial_sums = vec![0.0; groups * len];
        let mut plane_sums = vec![0.0; g.batch * g.c_out];
        let dx_parts: Vec<&mut [f32]> = match input_grad {
            true => dx.chunks_mut(IMAGES_PER_SUM * image_in).collect(),
            false => (0..groups).map(|_| Default::default()).collect(),
        };
        let tasks = partial_sums
            .chunks_mut(len)
            .zip(plane_sums.chunks_mut(IMAGES_PER_SUM * g.c_out))
            .zip(dx_parts)
            .enumerate()
            .collect();
        for_each_task(tasks, |(group, ((acc, sums), dx_part))| {
            let mut masked = vec![0.0; if relu_output.is_some() { image_grad } else { 0 }];
            let mut padded = vec![
                0.0;
                if input_grad {
                    g.c_out * (g.height + 2) * (g.width + 2)
                } else {
                    0
                }
            ];
            let zero_bias = vec![0.0; g.c_in];
            let first = group * IMAGES_PER_SUM;
            for (i, n) in (first..g.batch.min(first + IMAGES_PER_SUM)).enumerate() {
                let mut grad = &grad[n * image_grad..][..image_grad];
                if let Some(output) = relu_output {
                    let output = &output[n * image_grad..][..image_grad];
                    for ((m, &y), &d) in masked.iter_mut().zip(output).zip(grad) {
                        *m = if passes_relu(y) { d } else { 0.0 };
                    }
                    grad = &masked;
                }
                if let Some(flipped) = &flipped {
                    let out = &mut dx_part[i * image_in..][..image_in];
                    x_grad_image(g, flipped, &zero_bias, grad, &mut padded, out);
                }
                weight_grad_image_any(g, &x[n * image_in..][..image_in], grad, acc);
                for (sum, grad_plane) in
                    sums[i * g.c_out..].iter_mut().zip(grad.chunks_exact(plane))
                {
                    *sum = grad_plane.iter().sum::<f32>();
                }
            }
        });
        let mut dw = vec![0.0; len];
        for part in partial_sums.chunks_exact(len) {
            dw.iter_mut().zip(part).for_each(|(t, p)| *t += p);
        }
        let mut db = vec![0.0; g.c_out];
        for image in plane_sums.chunks_exact(g.c_out) {
            db.iter_mut().zip(image).for_each(|(t, s)| *t += s);
        }
        Grads {
            dx: input_grad.then_some(dx),
            dw,
            db,
        }
    }

    /// One image's input gradient: its output gradient, zero-padded by 2 (in `padded`, whose
    /// border stays zero), correlated with the kernel rotated by 180 degrees and with its channel
    /// axes swapped (`flipped`).
    fn x_grad_image(
        g: Geometry,
        flipped: &[f32],
        zero_bias: &[f32],
        grad: &[f32],
        padded: &mut [f32],
        out: &mut [f32],
    ) {
        let (oh, ow) = (g.height - 2, g.width - 2);
        let (ph, pw) = (g.height + 2, g.width + 2);
        for (plane, src_plane) in padded
            .chunks_exact_mut(ph * pw)
            .zip(grad.chunks_exact(oh * ow))
        {
            for (y, src_row) in src_plane.chunks_exact(ow).enumerate() {
                plane[(y + 2) * pw + 2..][..ow].copy_from_slice(src_row);
            }
        }
        by_blocks!(
            g.width,
            x0 => correlate(x0, g.width, g.c_out, ph, padded, flipped, zero_bias, out)
        )
    }

    /// `[c_out, c_in, ky, kx]` to `[c_in, c_out, 2 - ky, 2 - kx]`.
    fn flip_kernel(g: Geometry, weight: &[f32]) -> Vec<f32> {
        let mut flipped = vec![0.0; weight.len()];
        for co in 0..g.c_out {
            for ci in 0..g.c_in {
                for t in 0..9 {
                    flipped[(ci * g.c_out + co) * 9 + 8 - t] = weight[(co * g.c_in + ci) * 9 + t];
                }
            }
        }
        flipped
    }

    /// One image's share of `gw[co, ci, ky, kx] = sum over n, y, x of grad[n, co, y, x] *
    /// x[n, ci, y + ky, x + kx]`, added to `acc`. Literal widths let the compiler specialise the
    /// common rows: the report's (26, 24, 10, 8) and "same" layers' at 28, 14 and 7.
    fn weight_grad_image_any(g: Geometry, input: &[f32], grad: &[f32], acc: &mut [f32]) {
        match g.width - 2 {
            7 => weight_grad_image(7, g, input, grad, acc),
            8 => weight_grad_image(8, g, input, grad, acc),
            10 => weight_grad_image(10, g, input, grad, acc),
            14 => weight_grad_image(14, g, input, grad, acc),
            24 => weight_grad_image(24, g, input, grad, acc),
            26 => weight_grad_image(26, g, input, grad, acc),
            28 => weight_grad_image(28, g, input, grad, acc),
            ow => weight_grad_image(ow, g, input, grad, acc),
        }
    }

    /// One image's share of the weight gradient, added to `acc` `[c_out, c_in, 3, 3]`. The nine
    /// taps' partial sums live in nine 4-lane registers while a gradient row and the three input
    /// rows under it are read once, 4 columns at a time (a `[f32; ow]` per tap made every row a
    /// memory round trip); the `ow % 4` last columns are summed as scalars.
    #[inline(always)]
    fn weight_grad_image(ow: usize, g: Geometry, input: &[f32], grad: &[f32], acc: &mut [f32]) {
        let (height, width, oh) = (g.height, ow + 2, g.height - 2);
        let vector_end = ow / 4 * 4;
        let load = |values: &[f32], at: usize| f32x4::new(values[at..at + 4].try_into().unwrap());
        for (co, grad_plane) in grad.chunks_exact(oh * ow).enumerate() {
            for ci in 0..g.c_in {
                let plane = &input[ci * height * width..][..height * width];
                let mut lanes = [f32x4::ZERO; 9];
                let mut tail = [0.0f32; 9];
                for (y, grad_row) in grad_plane.chunks_exact(ow).enumerate() {
                    let rows = [0, 1, 2].map(|ky| &plane[(y + ky) * width..][..width]);
                    for x in (0..vector_end).step_by(4) {
                        let d = load(grad_row, x);
                        for (ky, row) in rows.iter().enumerate() {
                            for kx in 0..3 {
                                let t = ky * 3 + kx;
                                // A multiply, then an add: `wide`'s `mul_add` fuses them
                                // where the build has FMA (always on ARM), which would
                                // round differently from the browsers.
                                lanes[t] += d * load(row, x + kx);
                            }
                        }
                    }
                    for x in vector_end..ow {
                        for (ky, row) in rows.iter().enumerate() {
                            for kx in 0..3 {
                                tail[ky * 3 + kx] += grad_row[x] * row[x + kx];
                            }
                        }
                    }
                }
                let out = &mut acc[(co * g.c_in + ci) * 9..][..9];
                for ((o, lane), t) in out.iter_mut().zip(lanes).zip(tail) {
                    let [a, b, c, d] = lane.to_array();
                    *o += ((a + b) + (c + d)) + t;
                }
            }
        }
    }
}

/// Training: forward with the fast op, backward with its gradient op.
impl<B: Conv3x3Backend, C: CheckpointStrategy> Conv3x3Backend for Autodiff<B, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, weight, bias, false)
    }

    fn conv3x3_relu(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, weight, bias, true)
    }
}

/// The convolution (through ReLU if `relu`) as one node of the autodiff graph.
fn tracked<B: Conv3x3Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
    relu: bool,
) -> FloatTensor<Autodiff<B, C>> {
    #[derive(Debug)]
    struct Conv3x3Backward;

    impl<B: Conv3x3Backend> Backward<B, 3> for Conv3x3Backward {
        /// The input, the weights and, after a ReLU, the output (its zeros mask the gradient).
        type State = (NodeId, NodeId, Option<FloatTensor<B>>);

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_weight, node_bias] = ops.parents;
            let (x_state, weight_state, relu_output) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
            let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
            let input_grad = node_x.is_some();
            let (dx, dw, db) = match relu_output {
                Some(output) => B::conv3x3_relu_backward(x, weight, grad, output, input_grad),
                None => B::conv3x3_backward(x, weight, grad, input_grad),
            };
            if let (Some(node), Some(dx)) = (node_x, dx) {
                grads.register::<B>(node.id, dx);
            }
            if let Some(node) = node_weight {
                grads.register::<B>(node.id, dw);
            }
            if let Some(node) = node_bias {
                grads.register::<B>(node.id, db);
            }
        }
    }

    let forward = |x, weight, bias| match relu {
        true => B::conv3x3_relu(x, weight, bias),
        false => B::conv3x3(x, weight, bias),
    };
    match Conv3x3Backward
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x_state, weight_state) = (prep.checkpoint(&x), prep.checkpoint(&weight));
            let out = forward(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
            );
            let relu_output = relu.then(|| out.clone());
            prep.finish((x_state, weight_state, relu_output), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        )),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cpu::testing::{self, values};
    use burn::nn::conv::Conv2dConfig;
    use burn::prelude::Device;
    use burn::tensor::Distribution;

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        testing::assert_close(a, b, 1e-4, what)
    }

    /// Forward values and all three gradients match burn's own conv2d (then ReLU where fused):
    /// the report's shapes, odd widths (blocks of 8, 4, 2 and 1 columns), "same" padding and
    /// batches larger than the 16-image summation group.
    #[test]
    fn matches_burn_conv2d_forward_and_backward() {
        let device = Device::flex().autodiff();
        device.seed(3);
        for [c_in, c_out, side, batch, same] in [
            [1, 8, 28, 3, 0],
            [8, 8, 26, 3, 0],
            [8, 16, 12, 3, 0],
            [16, 16, 10, 3, 0],
            [2, 3, 7, 3, 0],
            [4, 6, 11, 2, 0],
            [3, 5, 13, 20, 1],
            [1, 4, 28, 17, 1],
            // Rows wider than the specialised ones: blocks of 8, 4, 2 and 1.
            [2, 3, 40, 2, 0],
            [1, 2, 35, 2, 1],
        ] {
            for activation in [Activation::None, Activation::Relu] {
                let same = same == 1;
                let what = format!(
                    "{c_in}->{c_out} at {side}, batch {batch}, same {same}, {activation:?}"
                );
                let layer = Conv2dConfig::new([c_in, c_out], [3, 3]).init(&device);
                let mut padded = layer.clone();
                padded.padding = PaddingConfig2d::Same;
                let x =
                    Tensor::<4>::random([batch, c_in, side, side], Distribution::Default, &device)
                        .require_grad();
                let ours = match same {
                    true => conv3x3(&layer, x.clone().pad([(1, 1), (1, 1)], 0.0), activation),
                    false => conv3x3(&layer, x.clone(), activation),
                };
                let theirs = match same {
                    true => padded.forward(x.clone()),
                    false => layer.forward(x.clone()),
                };
                let theirs = match activation {
                    Activation::Relu => relu(theirs),
                    Activation::None => theirs,
                };
                check_against(&layer, &x, ours, theirs, &what, assert_close);

                // The fused ReLU computes what a separate one would, to the bit.
                if activation == Activation::Relu {
                    let input = || match same {
                        true => x.clone().pad([(1, 1), (1, 1)], 0.0),
                        false => x.clone(),
                    };
                    let fused = conv3x3(&layer, input(), Activation::Relu);
                    let unfused = relu(conv3x3(&layer, input(), Activation::None));
                    let exact = |a: &[f32], b: &[f32], what: &str| {
                        assert_eq!(a, b, "{what}: the fused ReLU differs from burn's")
                    };
                    check_against(&layer, &x, fused, unfused, &what, exact);
                }
            }
        }
    }

    /// Compares `ours` and `theirs` (the same layer applied to `x`) with `compare`, and the
    /// gradients of `sum(y * mix)` for a random `mix` with respect to `x`, the weights and the
    /// bias.
    fn check_against(
        layer: &Conv2d,
        x: &Tensor<4>,
        ours: Tensor<4>,
        theirs: Tensor<4>,
        what: &str,
        compare: impl Fn(&[f32], &[f32], &str),
    ) {
        compare(&values(ours.clone()), &values(theirs.clone()), what);
        let mix = Tensor::<4>::random(ours.dims(), Distribution::Default, &ours.device());
        let grads_ours = (ours * mix.clone()).sum().backward();
        let grads_theirs = (theirs * mix).sum().backward();
        let weight = layer.weight.val();
        let pairs = [
            ("dx", x.grad(&grads_ours), x.grad(&grads_theirs)),
            ("dw", weight.grad(&grads_ours), weight.grad(&grads_theirs)),
        ];
        for (name, a, b) in pairs {
            compare(
                &values(a.unwrap()),
                &values(b.unwrap()),
                &format!("{what} {name}"),
            );
        }
        let bias = layer.bias.as_ref().unwrap().val();
        let db: [Vec<f32>; 2] = [&grads_ours, &grads_theirs].map(|g| {
            bias.grad(g)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        });
        compare(&db[0], &db[1], &format!("{what} db"));
    }
}
