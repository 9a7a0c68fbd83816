//! `flex` tensors as plain f32 slices and back, for the CPU kernels of the backend extensions
//! (`crate::conv`, `crate::norm`, `crate::pointwise`, `crate::head`).

use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Shape, TensorData};
use wide::f32x4;

pub fn is_f32(tensor: &FlexTensor) -> bool {
    tensor.dtype() == DType::F32
}

/// A contiguous f32 copy only where the layout needs one (a transposed view, say).
pub fn f32s(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => std::borrow::Cow::Borrowed(slice),
        None => std::borrow::Cow::Owned(
            tensor
                .to_contiguous()
                .as_slice::<f32>()
                .expect("a contiguous f32 tensor")
                .to_vec(),
        ),
    }
}

pub fn flex(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// `sum of term(a, b)` over pairs of equally long rows, in one fixed order: 4 columns at a time
/// into four lanes, each row's `len % 4` last as scalars, then `((l0 + l1) + (l2 + l3)) + tail`.
/// `wide`'s plain `+` and `*` never fuse, so every machine (SSE, AVX2, AVX-512, SIMD128) adds the
/// same roundings in the same order, where burn's reductions follow the CPU's widest vector.
#[inline(always)]
pub fn sum_rows<'a>(
    rows: impl Iterator<Item = (&'a [f32], &'a [f32])>,
    term: impl Fn(f32x4, f32x4) -> f32x4,
    scalar: impl Fn(f32, f32) -> f32,
) -> f32 {
    let load = |values: &[f32], at: usize| f32x4::new(values[at..at + 4].try_into().unwrap());
    let (mut lanes, mut tail) = (f32x4::ZERO, 0.0f32);
    for (a, b) in rows {
        let vector_end = a.len() / 4 * 4;
        for i in (0..vector_end).step_by(4) {
            lanes += term(load(a, i), load(b, i));
        }
        for i in vector_end..a.len() {
            tail += scalar(a[i], b[i]);
        }
    }
    let [l0, l1, l2, l3] = lanes.to_array();
    ((l0 + l1) + (l2 + l3)) + tail
}

/// What the kernels' tests compare with burn's ops.
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod testing {
    use burn::tensor::Tensor;

    pub fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Each of `a` within `tolerance` times the largest magnitude of `b` (at least 1) of `b`'s.
    pub fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tolerance * scale,
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }
}
