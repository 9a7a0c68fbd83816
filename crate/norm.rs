//! Batch normalisation in training as one backend op with a hand-written backward pass.
//!
//! burn 0.22's default `batch_norm_train` (which `flex` keeps) builds the statistics out of
//! tensor ops: a transposed copy of the batch per reduction, a dozen element-wise passes forward
//! and as many backward. In the best7k preset, with batch norm after each of its six
//! convolutions, that was 40% of a training step natively (the same network without its batch
//! norms: 32 ms per batch of 128 against 56). Here the CPU path is one pass per channel for each
//! statistic and one pass per image for the output, on every thread, and its sums run in one
//! fixed order: the same bits on any number of threads, natively (SSE, AVX2 or AVX-512) and in
//! the browser (SIMD128). burn's reductions follow the widest vector the CPU
//! offers, so native and browser runs of a batch-normalised network drifted apart
//! (`crate::cpu::sum_rows`).
//!
//! The op is a burn backend extension, as `crate::conv`'s: [`NormBackend`] is implemented for
//! `Flex` (the kernels), for the cubecl backend (burn's ops) and for `Autodiff` (one node whose
//! backward pass is [`NormBackend::norm_train_backward`]). Inference keeps burn's `batch_norm`,
//! an element-wise pass with the running statistics.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
#[cfg(not(threads))]
use burn::backend::Cube;
use burn::backend::{backend_extension, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

use crate::cpu::{f32s, flex, is_f32};

/// `norm` applied to `x` `[batch, channels, ...]`, as burn's `BatchNorm::forward` does: on a
/// training device with the batch's statistics (through the op below), folding them into the
/// running ones with the layer's momentum; elsewhere with the running statistics.
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let [features] = norm.gamma.dims();
    assert_eq!(
        x.dims()[1],
        features,
        "batch norm over the wrong number of channels"
    );
    if !(x.device().is_autodiff() && norm.training.is_enabled()) {
        return norm.forward(x);
    }
    let device = x.device();
    let (output, mean, variance) = Dispatch::norm_train(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
    );
    let fold = |running: Tensor<1>, batch| {
        let batch = Tensor::<1>::from_dispatch(batch).detach();
        running
            .to_device(&device)
            .mul_scalar(1.0 - norm.momentum)
            .add(batch.mul_scalar(norm.momentum))
            .detach()
    };
    norm.running_mean
        .update(fold(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(fold(norm.running_var.value_sync(), variance));
    Tensor::from_dispatch(output)
}

/// The output, the batch's mean and its biased variance (what burn's running statistics take).
type Train<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);
/// The gradients with respect to the input, `gamma` and `beta`.
type Grads<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// Batch normalisation with the batch's own statistics, and its gradients. The trait spells the
/// tuples out: `backend_extension` maps each of their parts and cannot see through an alias.
#[backend_extension(Flex, Cube: cfg(not(threads)), Autodiff)]
pub trait NormBackend: Backend {
    fn norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let result = Self::batch_norm_train(x, gamma, beta, epsilon);
        (result.output, result.mean, result.variance)
    }

    /// The gradients with respect to the input, `gamma` and `beta`, given the statistics
    /// [`NormBackend::norm_train`] returned.
    fn norm_train_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let result = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
        (result.x_grad, result.gamma_grad, result.beta_grad)
    }
}

/// WebGPU (and native wgpu): burn's ops.
#[cfg(not(threads))]
impl NormBackend for Cube {}

/// The kernels below where everything is f32; burn's ops otherwise.
impl NormBackend for Flex {
    fn norm_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> Train<Self> {
        match Layout::of(&x) {
            Some(l) if [&gamma, &beta].iter().all(|t| is_f32(t)) => {
                let (out, mean, variance) =
                    kernels::forward(l, &f32s(&x), &f32s(&gamma), &f32s(&beta), epsilon as f32);
                (
                    flex(out, x.shape()),
                    flex(mean, [l.channels]),
                    flex(variance, [l.channels]),
                )
            }
            _ => {
                let result = Self::batch_norm_train(x, gamma, beta, epsilon);
                (result.output, result.mean, result.variance)
            }
        }
    }

    fn norm_train_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        grad: FlexTensor,
    ) -> Grads<Self> {
        match Layout::of(&x) {
            Some(l) if [&gamma, &mean, &variance, &grad].iter().all(|t| is_f32(t)) => {
                let (dx, dgamma, dbeta) = kernels::backward(
                    l,
                    &f32s(&x),
                    &f32s(&gamma),
                    &f32s(&mean),
                    &f32s(&variance),
                    epsilon as f32,
                    &f32s(&grad),
                );
                (
                    flex(dx, x.shape()),
                    flex(dgamma, [l.channels]),
                    flex(dbeta, [l.channels]),
                )
            }
            _ => {
                let r = Self::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
                (r.x_grad, r.gamma_grad, r.beta_grad)
            }
        }
    }
}

/// `[batch, channels, ...]` seen as `[batch, channels, plane]`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Layout {
    fn of(x: &FlexTensor) -> Option<Self> {
        let shape = x.shape();
        (is_f32(x) && shape.num_dims() >= 2 && shape.num_elements() > 0).then(|| Self {
            batch: shape[0],
            channels: shape[1],
            plane: shape.num_elements() / (shape[0] * shape[1]),
        })
    }

    /// How many values each channel's statistics are over.
    fn count(self) -> f32 {
        (self.batch * self.plane) as f32
    }
}

/// Plain-slice kernels, `[batch, channels, plane]`, f32. A channel's sums are one thread's, in
/// one order; channels and images are independent, so natively they run in parallel.
mod kernels {
    use super::Layout;
    use crate::cpu::sum_rows;
    use crate::threads::for_each_part;
    use wide::f32x4;

    /// Two values per channel, side by side (one part per channel for `for_each_part`).
    struct Pairs(Vec<f32>);

    impl Pairs {
        /// `pair(channel)` for every channel, in parallel.
        fn each(l: Layout, pair: impl Fn(usize) -> [f32; 2] + Sync + Send) -> Self {
            let mut values = vec![0.0; 2 * l.channels];
            for_each_part(&mut values, 2, |c, part| part.copy_from_slice(&pair(c)));
            Self(values)
        }

        fn split(self) -> (Vec<f32>, Vec<f32>) {
            self.0.chunks_exact(2).map(|p| (p[0], p[1])).unzip()
        }
    }

    /// `sum over n and i of term(a[n, c, i], b[n, c, i])` for one channel, in `sum_rows`' order.
    #[inline(always)]
    fn channel_sum(
        l: Layout,
        c: usize,
        a: &[f32],
        b: &[f32],
        term: impl Fn(f32x4, f32x4) -> f32x4,
        scalar: impl Fn(f32, f32) -> f32,
    ) -> f32 {
        let rows = (0..l.batch).map(|n| {
            let at = (n * l.channels + c) * l.plane;
            (&a[at..][..l.plane], &b[at..][..l.plane])
        });
        sum_rows(rows, term, scalar)
    }

    /// `value(c, v)` for every value `v` of channel `c`, into a new batch, one image per task.
    fn map(l: Layout, x: &[f32], value: impl Fn(usize, f32) -> f32 + Sync + Send) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        let image = l.channels * l.plane;
        for_each_part(&mut out, image, |n, out| {
            let x = &x[n * image..][..image];
            for (c, (out, x)) in out
                .chunks_exact_mut(l.plane)
                .zip(x.chunks_exact(l.plane))
                .enumerate()
            {
                out.iter_mut().zip(x).for_each(|(o, &v)| *o = value(c, v));
            }
        });
        out
    }

    /// The normalised batch `(x - mean) / sqrt(variance + epsilon) * gamma + beta` (burn's
    /// element-wise formula) and each channel's mean and biased variance (two passes: the
    /// variance sums squares of centred values, as burn's does).
    pub fn forward(
        l: Layout,
        x: &[f32],
        gamma: &[f32],
        beta: &[f32],
        epsilon: f32,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (mean, variance) = Pairs::each(l, |c| {
            let mean = channel_sum(l, c, x, x, |v, _| v, |v, _| v) / l.count();
            let m = f32x4::splat(mean);
            let squares = channel_sum(
                l,
                c,
                x,
                x,
                |v, _| (v - m) * (v - m),
                |v, _| (v - mean) * (v - mean),
            );
            [mean, squares / l.count()]
        })
        .split();
        let std: Vec<f32> = variance.iter().map(|v| (v + epsilon).sqrt()).collect();
        let out = map(l, x, |c, v| (v - mean[c]) / std[c] * gamma[c] + beta[c]);
        (out, mean, variance)
    }

    /// burn's gradient formula, with `x̂ = (x - mean) / sqrt(variance + epsilon)`:
    /// `dbeta = sum(dy)`, `dgamma = sum(dy x̂)` over each channel's values, and
    /// `dx = gamma / sqrt(variance + epsilon) * ((dy - mean(dy)) - x̂ mean(dy x̂))`.
    pub fn backward(
        l: Layout,
        x: &[f32],
        gamma: &[f32],
        mean: &[f32],
        variance: &[f32],
        epsilon: f32,
        grad: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let inv_std: Vec<f32> = variance
            .iter()
            .map(|v| 1.0 / (v + epsilon).sqrt())
            .collect();
        let sums = Pairs::each(l, |c| {
            let (m, s) = (mean[c], inv_std[c]);
            let (mv, sv) = (f32x4::splat(m), f32x4::splat(s));
            let dy = channel_sum(l, c, grad, grad, |d, _| d, |d, _| d);
            let dy_xhat = channel_sum(
                l,
                c,
                grad,
                x,
                |d, v| d * ((v - mv) * sv),
                |d, v| d * ((v - m) * s),
            );
            [dy, dy_xhat]
        });
        let (dbeta, dgamma) = sums.split();
        let image = l.channels * l.plane;
        let mut dx = vec![0.0; x.len()];
        for_each_part(&mut dx, image, |n, out| {
            let at = n * image;
            for c in 0..l.channels {
                let (m, s) = (mean[c], inv_std[c]);
                let (mean_dy, mean_dy_xhat) = (dbeta[c] / l.count(), dgamma[c] / l.count());
                let scale = gamma[c] * s;
                let range = c * l.plane..(c + 1) * l.plane;
                let (x, grad) = (&x[at..][range.clone()], &grad[at..][range.clone()]);
                for ((o, &v), &d) in out[range].iter_mut().zip(x).zip(grad) {
                    *o = scale * ((d - mean_dy) - ((v - m) * s) * mean_dy_xhat);
                }
            }
        });
        (dx, dgamma, dbeta)
    }
}

/// Training: one autodiff node whose backward pass is the gradient op.
impl<B: NormBackend, C: CheckpointStrategy> NormBackend for Autodiff<B, C> {
    fn norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> Train<Self> {
        tracked::<B, C>(x, gamma, beta, epsilon)
    }
}

fn tracked<B: NormBackend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    gamma: FloatTensor<Autodiff<B, C>>,
    beta: FloatTensor<Autodiff<B, C>>,
    epsilon: f64,
) -> Train<Autodiff<B, C>> {
    #[derive(Debug)]
    struct NormBackward;

    impl<B: NormBackend> Backward<B, 3> for NormBackward {
        /// The input, `gamma`, the batch's statistics and epsilon.
        type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

        fn backward(
            self,
            ops: Ops<Self::State, 3>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_gamma, node_beta] = ops.parents;
            let (x_state, gamma_state, mean, variance, epsilon) = ops.state;
            let grad = grads.consume::<B>(&ops.node);
            let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
            let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
            let (dx, dgamma, dbeta) =
                B::norm_train_backward(x, gamma, mean, variance, epsilon, grad);
            for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                if let Some(node) = node {
                    grads.register::<B>(node.id, grad);
                }
            }
        }
    }

    let untracked = |tensor| <Autodiff<B, C> as AutodiffBackend>::from_inner(tensor);
    match NormBackward
        .prepare::<C>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let (x_state, gamma_state) = (prep.checkpoint(&x), prep.checkpoint(&gamma));
            let (out, mean, variance) = B::norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            );
            let state = (
                x_state,
                gamma_state,
                mean.clone(),
                variance.clone(),
                epsilon,
            );
            (
                prep.finish(state, out),
                untracked(mean),
                untracked(variance),
            )
        }
        OpsKind::UnTracked(prep) => {
            let (out, mean, variance) = B::norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            );
            (prep.finish(out), untracked(mean), untracked(variance))
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cpu::testing::{self, values};
    use burn::nn::BatchNormConfig;
    use burn::prelude::Device;
    use burn::tensor::Distribution;

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        testing::assert_close(a, b, 1e-4, what)
    }

    /// One training pass of `norm` over `x` (ours or burn's), then the gradients of
    /// `sum(y * mix)`: the output, dx, dgamma, dbeta and the running mean and variance after it.
    fn pass<const D: usize>(
        norm: &BatchNorm,
        x: &Tensor<D>,
        mix: &Tensor<D>,
        ours: bool,
    ) -> [Vec<f32>; 6] {
        let x = x.clone().require_grad();
        let y = match ours {
            true => batch_norm(norm, x.clone()),
            false => norm.forward(x.clone()),
        };
        let grads = (y.clone() * mix.clone()).sum().backward();
        let grad1 = |t: Tensor<1>| values(t.grad(&grads).unwrap());
        [
            values(y),
            values(x.grad(&grads).unwrap()),
            grad1(norm.gamma.val()),
            grad1(norm.beta.val()),
            values(norm.running_mean.value_sync()),
            values(norm.running_var.value_sync()),
        ]
    }

    /// The output, the three gradients and the running statistics match burn's `BatchNorm`
    /// (to rounding: the sums add in another order) for images (odd planes: lanes and scalar
    /// tails) and for vectors (after a dense layer), with gamma and beta away from 1 and 0.
    #[test]
    fn matches_burn_batch_norm_in_training() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let names = [
            "output",
            "dx",
            "dgamma",
            "dbeta",
            "running mean",
            "running variance",
        ];
        let check = |ours: [Vec<f32>; 6], theirs: [Vec<f32>; 6], what: &str| {
            for ((a, b), name) in ours.iter().zip(&theirs).zip(names) {
                assert_close(a, b, &format!("{what} {name}"));
            }
        };
        for [batch, channels, side] in [[7, 3, 5], [16, 8, 28], [3, 2, 1], [128, 14, 7]] {
            let what = format!("[{batch}, {channels}, {side}, {side}]");
            let g = Tensor::<1>::random([channels], Distribution::Default, &device);
            let make = || {
                let mut norm = BatchNormConfig::new(channels).init(&device);
                let shift = |by: f32| g.clone().add_scalar(by).require_grad();
                norm.gamma = norm.gamma.map(|_| shift(0.5));
                norm.beta = norm.beta.map(|_| shift(-0.3));
                norm
            };
            let shape = [batch, channels, side, side];
            let x = Tensor::<4>::random(shape, Distribution::Normal(2.0, 3.0), &device);
            let mix = Tensor::<4>::random(shape, Distribution::Default, &device);
            check(
                pass(&make(), &x, &mix, true),
                pass(&make(), &x, &mix, false),
                &what,
            );
        }
        let x = Tensor::<2>::random([9, 5], Distribution::Normal(-1.0, 2.0), &device);
        let mix = Tensor::<2>::random([9, 5], Distribution::Default, &device);
        let norm = || BatchNormConfig::new(5).init(&device);
        check(
            pass(&norm(), &x, &mix, true),
            pass(&norm(), &x, &mix, false),
            "[9, 5]",
        );
    }

    /// The same bits on one thread and on three: each channel's sums are one thread's.
    #[test]
    fn the_same_bits_on_any_number_of_threads() {
        let device = Device::flex().autodiff();
        device.seed(8);
        let x = Tensor::<4>::random([33, 6, 9, 9], Distribution::Normal(0.5, 2.0), &device);
        let mix = Tensor::<4>::random([33, 6, 9, 9], Distribution::Default, &device);
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| pass(&BatchNormConfig::new(6).init(&device), &x, &mix, true))
        };
        assert_eq!(on(1), on(3));
    }
}
