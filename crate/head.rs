//! The sums at a network's end as backend ops in one fixed order: global average pooling and
//! the softmax cross-entropy loss (with its gradient).
//!
//! burn's `flex` sums along a row with as many accumulators as the CPU's widest vector (8 or 16
//! lanes natively, 4 in the browser), and burn builds the loss out of reductions and broadcasts
//! whose backward passes add more: the same seed trained differently natively and in a tab. Here
//! a plane's mean goes through `crate::cpu::sum_rows`, a row of 10 values is summed in order and
//! the batch's losses likewise, on one thread: the same bits on any machine.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
#[cfg(not(threads))]
use burn::backend::Cube;
use burn::backend::{backend_extension, Backend, Dispatch, Flex, TensorMetadata};
use burn::tensor::{Int, Scalar, Shape, Tensor};

use crate::cpu::{f32s, flex, is_f32, sum_rows};

/// `[batch, channels, h, w]` to each plane's mean `[batch, channels]`.
pub fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [batch, channels, h, w] = x.dims();
    let x = x.reshape([batch, channels, h * w]);
    Tensor::from_dispatch(Dispatch::plane_mean(x.into_dispatch()))
}

/// Keras' categorical cross-entropy of softmax outputs: the mean over the batch of
/// `log(sum exp(values)) - values[target]`, from values `[batch, classes]` and digits `[batch]`.
pub fn cross_entropy(values: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [_, classes] = values.dims();
    let one_hot = one_hot(targets, classes); // [batch, classes]
    Tensor::from_dispatch(Dispatch::cross_entropy(
        values.into_dispatch(),
        one_hot.into_dispatch(),
    ))
}

/// Digits `[batch]` as one-hot rows `[batch, classes]`, by comparisons on the device: burn's
/// `one_hot` checks its indices by reading them back, which a browser's GPU cannot do
/// synchronously (WebGPU training stopped there).
pub fn one_hot(targets: Tensor<1, Int>, classes: usize) -> Tensor<2> {
    let [batch] = targets.dims();
    let digits = Tensor::<1, Int>::arange(0..classes as i64, &targets.device())
        .reshape([1, classes])
        .expand([batch, classes]); // [batch, classes]: 0..classes on each row
    let targets = targets.reshape([batch, 1]).expand([batch, classes]); // [batch, classes]
    targets.equal(digits).float()
}

/// burn's own ops: what every backend but `flex` (f32) runs.
mod reference {
    use super::*;

    pub fn plane_mean<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
        let shape = x.shape();
        let mean = B::float_mean_dim(x, 2);
        B::float_reshape(mean, Shape::new([shape[0], shape[1]]))
    }

    pub fn cross_entropy<B: Backend>(
        values: FloatTensor<B>,
        targets: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let log_softmax = B::log_softmax(values, 1);
        let picked = B::float_sum_dim(B::float_mul(log_softmax, targets), 1);
        B::float_neg(B::float_reshape(B::float_mean(picked), Shape::new([1])))
    }

    pub fn cross_entropy_backward<B: Backend>(
        values: FloatTensor<B>,
        targets: FloatTensor<B>,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        let batch = values.shape()[0];
        let diff = B::float_sub(B::softmax(values, 1), targets);
        let grad = B::float_div_scalar(grad, Scalar::Float(batch as f64));
        B::float_mul(diff, B::float_reshape(grad, Shape::new([1, 1])))
    }
}

/// Each plane's mean and the softmax cross-entropy (the mean over rows of
/// `logsumexp(values) - sum(values * target)`), with the latter's gradient.
#[backend_extension(Flex, Cube: cfg(not(threads)), Autodiff)]
pub trait HeadBackend: Backend {
    /// `[batch, channels, plane]` to `[batch, channels]`.
    fn plane_mean(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::plane_mean::<Self>(x)
    }

    /// `[1]` from values and one-hot targets `[batch, classes]`.
    fn cross_entropy(values: FloatTensor<Self>, targets: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::cross_entropy::<Self>(values, targets)
    }

    /// The gradient of [`HeadBackend::cross_entropy`] with respect to the values, `grad` `[1]`
    /// being the loss's: `(softmax(values) - targets) * grad / batch`.
    fn cross_entropy_backward(
        values: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::cross_entropy_backward::<Self>(values, targets, grad)
    }
}

/// WebGPU (and native wgpu): burn's ops.
#[cfg(not(threads))]
impl HeadBackend for Cube {}

/// The loops below where everything is f32; burn's ops otherwise.
impl HeadBackend for Flex {
    fn plane_mean(x: FlexTensor) -> FlexTensor {
        let shape = x.shape();
        if !is_f32(&x) || shape.num_dims() != 3 || shape.num_elements() == 0 {
            return reference::plane_mean::<Self>(x);
        }
        let plane = shape[2];
        let values = f32s(&x);
        let means = values
            .chunks_exact(plane)
            .map(|p| sum_rows(std::iter::once((p, p)), |v, _| v, |v, _| v) / plane as f32)
            .collect();
        flex(means, [shape[0], shape[1]])
    }

    fn cross_entropy(values: FlexTensor, targets: FlexTensor) -> FlexTensor {
        let Some(classes) = rows_of(&values, &targets) else {
            return reference::cross_entropy::<Self>(values, targets);
        };
        let batch = values.shape()[0];
        let (values, targets) = (f32s(&values), f32s(&targets));
        let rows = values
            .chunks_exact(classes)
            .zip(targets.chunks_exact(classes));
        let mut total = 0.0f32;
        for (z, t) in rows {
            let (max, sum) = softmax_sums(z);
            // Only the target's terms: a logit of -inf elsewhere times 0 would make the loss NaN.
            let targeted = z.iter().zip(t).filter(|(_, t)| **t != 0.0);
            let picked = targeted.fold(0.0f32, |s, (z, t)| s + z * t);
            total += (max + ln(sum)) - picked;
        }
        flex(vec![total / batch as f32], [1])
    }

    fn cross_entropy_backward(
        values: FlexTensor,
        targets: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        let classes = match rows_of(&values, &targets) {
            Some(classes) if is_f32(&grad) => classes,
            _ => return reference::cross_entropy_backward::<Self>(values, targets, grad),
        };
        let shape = values.shape();
        let (values, targets) = (f32s(&values), f32s(&targets));
        let scale = f32s(&grad)[0] / shape[0] as f32;
        let mut out = vec![0.0; values.len()];
        let rows = out.chunks_exact_mut(classes).zip(
            values
                .chunks_exact(classes)
                .zip(targets.chunks_exact(classes)),
        );
        for (o, (z, t)) in rows {
            let (max, sum) = softmax_sums(z);
            for ((o, z), t) in o.iter_mut().zip(z).zip(t) {
                *o = (exp(z - max) / sum - t) * scale;
            }
        }
        flex(out, shape)
    }
}

/// The row length when values and targets are the same f32 `[batch, classes]`.
fn rows_of(values: &FlexTensor, targets: &FlexTensor) -> Option<usize> {
    let shape = values.shape();
    let fits = is_f32(values)
        && is_f32(targets)
        && shape.num_dims() == 2
        && shape == targets.shape()
        && shape.num_elements() > 0;
    fits.then(|| shape[1])
}

/// A row's largest value and `sum of exp(z - max)`, in order.
fn softmax_sums(z: &[f32]) -> (f32, f32) {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    (max, z.iter().fold(0.0f32, |s, &v| s + exp(v - max)))
}

/// `e^x` from additions, multiplications, divisions and an exact scaling by a power of two, in
/// f64, then rounded: libm's `exp` differs between platforms in the last bit (glibc natively, a
/// port of musl's in wasm), which was enough to part a native run from a browser's (see
/// `crate::schedule::cos_pi` for the same reason).
fn exp(x: f32) -> f32 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    if x.is_nan() {
        return x;
    }
    let x = f64::from(x);
    if x < -104.0 {
        return 0.0; // below half of f32's smallest subnormal
    }
    if x > 89.0 {
        return f32::INFINITY;
    }
    // x = k ln 2 + r with |r| <= ln 2 / 2: e^r by its Taylor series to degree 13 (error below
    // 1e-17), times 2^k.
    let k = (x * std::f64::consts::LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let series = (1..=13).rev().fold(1.0, |p, n| 1.0 + p * r / f64::from(n));
    let two_to_k = f64::from_bits(((k as i64 + 1023) as u64) << 52);
    (series * two_to_k) as f32
}

/// The natural logarithm, as [`exp`]: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, and
/// `ln m = 2 atanh((m - 1) / (m + 1))` by its series to the 23rd power (error below 1e-18).
fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let bits = f64::from(x).to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1 << 52) - 1)) | (1023 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let series = (0..12)
        .rev()
        .fold(0.0, |p, n| p * t * t + 1.0 / f64::from(2 * n + 1));
    (e as f64 * std::f64::consts::LN_2 + 2.0 * t * series) as f32
}

/// Training: the mean and the loss as nodes of the autodiff graph.
impl<B: HeadBackend, C: CheckpointStrategy> HeadBackend for Autodiff<B, C> {
    fn plane_mean(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PlaneMeanBackward;

        impl<B: Backend> Backward<B, 1> for PlaneMeanBackward {
            /// The input's shape `[batch, channels, plane]`.
            type State = Shape;

            fn backward(self, ops: Ops<Shape, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let shape = ops.state;
                let plane = shape[2];
                let grad = grads.consume::<B>(&ops.node); // [batch, channels]
                let grad = B::float_reshape(grad, Shape::new([shape[0], shape[1], 1]));
                let grad =
                    B::float_div_scalar(B::float_expand(grad, shape), Scalar::Float(plane as f64));
                if let [Some(node)] = ops.parents {
                    grads.register::<B>(node.id, grad);
                }
            }
        }

        match PlaneMeanBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = x.shape();
                prep.finish(shape, B::plane_mean(x.into_primitive()))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::plane_mean(x.into_primitive())),
        }
    }

    fn cross_entropy(values: FloatTensor<Self>, targets: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropyBackward;

        impl<B: HeadBackend> Backward<B, 1> for CrossEntropyBackward {
            /// The values and the targets.
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (values, targets) = ops.state;
                let grad = grads.consume::<B>(&ops.node);
                if let [Some(node)] = ops.parents {
                    grads.register::<B>(node.id, B::cross_entropy_backward(values, targets, grad));
                }
            }
        }

        let targets = targets.into_primitive();
        match CrossEntropyBackward
            .prepare::<C>([values.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let values = values.into_primitive();
                let loss = B::cross_entropy(values.clone(), targets.clone());
                prep.finish((values, targets), loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::cross_entropy(values.into_primitive(), targets))
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::cpu::testing::{self, values};
    use burn::nn::loss::CrossEntropyLoss;
    use burn::prelude::Device;
    use burn::tensor::Distribution;

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        testing::assert_close(a, b, 1e-5, what)
    }

    /// The portable `exp` and `ln` against the platform's, computed in f64 and rounded: within
    /// one unit in the last place over the ranges the loss uses and beyond.
    #[test]
    fn exp_and_ln_match_libm_to_the_last_place() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        for i in 0..=200_000 {
            let x = -104.0 + 192.7 * i as f32 / 200_000.0;
            let want = f64::from(x).exp() as f32;
            assert!(ulps(exp(x), want) <= 1, "exp({x}): {} vs {want}", exp(x));
            let y = 1e-30f32 * 1.0007f32.powi(i % 150_000);
            let want = f64::from(y).ln() as f32;
            assert!(ulps(ln(y), want) <= 1, "ln({y}): {} vs {want}", ln(y));
        }
        for y in [1e-45f32, 3e-42, f32::MIN_POSITIVE, f32::MAX] {
            assert!(ulps(ln(y), f64::from(y).ln() as f32) <= 1, "ln({y})");
        }
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(ln(1.0), 0.0);
        assert!(exp(f32::NAN).is_nan() && ln(-1.0).is_nan());
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
    }

    /// The one-hot rows match burn's `one_hot`.
    #[test]
    fn one_hot_rows_match_burn() {
        let device = Device::flex();
        let targets = Tensor::<1, Int>::from_data([3i64, 0, 9, 3], &device);
        let ours = values(one_hot(targets.clone(), 10));
        assert_eq!(ours, values(targets.one_hot::<2>(10).float()));
        assert_eq!(ours.iter().sum::<f32>(), 4.0);
    }

    /// The mean of each plane (odd planes: lanes and scalar tails) and its gradient, against
    /// burn's `mean_dim`.
    #[test]
    fn global_average_pooling_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(6);
        for shape in [[4, 3, 5, 5], [2, 14, 7, 7], [3, 2, 1, 1], [1, 1, 28, 28]] {
            let x = Tensor::<4>::random(shape, Distribution::Normal(1.0, 3.0), &device);
            let mix = Tensor::<2>::random([shape[0], shape[1]], Distribution::Default, &device);
            let run = |ours: bool| {
                let x = x.clone().require_grad();
                let y = match ours {
                    true => global_avg_pool(x.clone()),
                    false => x.clone().mean_dim(3).mean_dim(2).flatten(1, 3),
                };
                let grads = (y.clone() * mix.clone()).sum().backward();
                [values(y), values(x.grad(&grads).unwrap())]
            };
            let (ours, theirs) = (run(true), run(false));
            assert_close(&ours[0], &theirs[0], &format!("{shape:?} mean"));
            assert_close(&ours[1], &theirs[1], &format!("{shape:?} dx"));
        }
    }

    /// The loss and its gradient against burn's `CrossEntropyLoss`, with logits far from zero
    /// (the largest value is subtracted first) and a batch larger than a SIMD register's lanes.
    #[test]
    fn cross_entropy_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(7);
        for (batch, classes, spread) in [(128, 10, 3.0), (3, 10, 40.0), (5, 2, 1.0)] {
            let logits =
                Tensor::<2>::random([batch, classes], Distribution::Normal(5.0, spread), &device);
            let targets: Vec<i64> = (0..batch as i64)
                .map(|i| (i * 7) % classes as i64)
                .collect();
            let targets = Tensor::<1, Int>::from_data(targets.as_slice(), &device);
            let run = |ours: bool| {
                let x = logits.clone().require_grad();
                let loss = match ours {
                    true => cross_entropy(x.clone(), targets.clone()),
                    false => {
                        CrossEntropyLoss::new(None, &device).forward(x.clone(), targets.clone())
                    }
                };
                let grads = loss.clone().mul_scalar(3.0).backward();
                [values(loss), values(x.grad(&grads).unwrap())]
            };
            let (ours, theirs) = (run(true), run(false));
            let what = format!("batch {batch}, {classes} classes, spread {spread}");
            assert_close(&ours[0], &theirs[0], &format!("{what} loss"));
            assert_close(&ours[1], &theirs[1], &format!("{what} gradient"));
        }
        // A logit of -inf off the target leaves the loss finite, as burn's.
        let logits = Tensor::<2>::from_data([[0.0f32, f32::NEG_INFINITY, 1.0]], &device);
        let targets = Tensor::<1, Int>::from_data([2i64], &device);
        let loss = values(cross_entropy(logits, targets))[0];
        let want = (1.0f32 + 1.0f32.exp()).ln() - 1.0;
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
    }
}
