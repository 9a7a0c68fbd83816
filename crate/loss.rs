//! The losses the report tried, on the network's last-layer values and the true digits.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid, softmax};
use serde::{Deserialize, Serialize};

use crate::head::{cross_entropy, one_hot};
use crate::model::CLASSES;
use crate::network::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Keras' categorical cross-entropy: the report's loss.
    #[default]
    CrossEntropy,
    /// Mean squared error between the probabilities and the one-hot target.
    Mse,
    /// Mean absolute error between the probabilities and the one-hot target.
    Mae,
}

impl Loss {
    /// Whether a loss far above a uniform guess's means divergence (the error losses are
    /// bounded, so only non-finite values tell).
    pub fn is_log_loss(self) -> bool {
        self == Loss::CrossEntropy
    }

    /// The mean loss over the batch `[1]`, from values `[batch, 10]` and digits `[batch]`,
    /// as Keras computes it for `output`: with a sigmoid output, cross-entropy reads the
    /// sigmoids divided by their sum.
    pub fn mean(self, output: Output, values: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        match (self, output) {
            (Loss::CrossEntropy, Output::Softmax) => cross_entropy(values, targets),
            (Loss::CrossEntropy, Output::Sigmoid) => {
                // -log(sigmoid(z_y) / sum sigmoid(z)) = log(sum sigmoid(z)) - log_sigmoid(z_y)
                let [batch, _] = values.dims();
                let log_sum = sigmoid(values.clone()).sum_dim(1).log(); // [batch, 1]
                let picked = log_sigmoid(values).gather(1, targets.reshape([batch, 1])); // [batch, 1]
                (log_sum - picked).mean()
            }
            (error, _) => {
                let probabilities = match output {
                    Output::Softmax => softmax(values, 1),
                    Output::Sigmoid => sigmoid(values),
                };
                let one_hot = one_hot(targets, CLASSES); // [batch, 10]
                let diff = probabilities - one_hot;
                match error {
                    Loss::Mse => diff.powi_scalar(2).mean(),
                    _ => diff.abs().mean(),
                }
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn mean(loss: Loss, output: Output, values: [[f32; 10]; 2], targets: [i64; 2]) -> f64 {
        let device = Device::flex();
        let values = Tensor::<2>::from_data(values, &device);
        let targets = Tensor::<1, Int>::from_data(targets, &device);
        let out: Vec<f32> = loss
            .mean(output, values, targets)
            .into_data()
            .try_to_vec_as()
            .unwrap();
        f64::from(out[0])
    }

    /// Each loss against the formula computed by hand in f64.
    #[test]
    fn every_loss_matches_its_formula() {
        let mut a = [0.0f32; 10];
        a[3] = 2.0;
        let mut b = [0.0f32; 10];
        b[0] = -1.0;
        b[7] = 1.0;
        let rows = [a, b];
        let targets = [3i64, 7];
        let softmax = |row: &[f32; 10]| {
            let sum: f64 = row.iter().map(|&z| f64::from(z).exp()).sum();
            row.map(|z| f64::from(z).exp() / sum)
        };
        let sigmoid = |row: &[f32; 10]| row.map(|z| 1.0 / (1.0 + (-f64::from(z)).exp()));
        for (output, probs) in [
            (Output::Softmax, rows.map(|r| softmax(&r))),
            (Output::Sigmoid, rows.map(|r| sigmoid(&r))),
        ] {
            let ce: f64 = probs
                .iter()
                .zip(targets)
                .map(|(p, t)| -(p[t as usize] / p.iter().sum::<f64>()).ln())
                .sum::<f64>()
                / 2.0;
            let errors = |f: fn(f64) -> f64| {
                probs
                    .iter()
                    .zip(targets)
                    .flat_map(|(p, t)| {
                        p.iter()
                            .enumerate()
                            .map(move |(i, &v)| f(v - if i == t as usize { 1.0 } else { 0.0 }))
                    })
                    .sum::<f64>()
                    / 20.0
            };
            for (loss, expected) in [
                (Loss::CrossEntropy, ce),
                (Loss::Mse, errors(|d| d * d)),
                (Loss::Mae, errors(f64::abs)),
            ] {
                let got = mean(loss, output, rows, targets);
                assert!(
                    (got - expected).abs() < 1e-5,
                    "{loss:?} {output:?}: {got} vs {expected}"
                );
            }
        }
    }
}
