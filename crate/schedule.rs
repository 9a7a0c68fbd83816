//! The optimizers and learning-rate schedules the report's author could try.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    #[default]
    Adam,
    /// Stochastic gradient descent with (Keras-style, undampened) momentum.
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// The rate times `step_factor` every `step_every` epochs.
    Step,
    /// Up from a 25th of the rate to the rate over the first 30% of the steps, then down to a
    /// 250,000th, both halves cosine-shaped (PyTorch's `OneCycleLR` defaults), over `epochs`.
    OneCycle,
}

/// The learning rate of batch `batch` (0-based) of epoch `epoch` (0-based), an epoch having
/// `batches` batches.
pub fn learning_rate(config: &TrainConfig, epoch: usize, batch: usize, batches: usize) -> f64 {
    let base = config.learning_rate;
    match config.schedule {
        Schedule::Constant => base,
        Schedule::Step => {
            let steps = (epoch / config.step_every.max(1)) as i32;
            base * config.step_factor.powi(steps)
        }
        Schedule::OneCycle => {
            let total = (config.epochs * batches).max(1) as f64;
            let done = ((epoch * batches + batch) as f64 / total).min(1.0);
            let (low, peak, end) = (base / 25.0, base, base / 25.0 / 1e4);
            // Cosine from `from` to `to` as `p` goes from 0 to 1.
            let anneal = |from: f64, to: f64, p: f64| to + (from - to) * (1.0 + cos_pi(p)) / 2.0;
            const WARM_UP: f64 = 0.3;
            if done < WARM_UP {
                anneal(low, peak, done / WARM_UP)
            } else {
                anneal(peak, end, (done - WARM_UP) / (1.0 - WARM_UP))
            }
        }
    }
}

/// cos(pi * p) for p in [0, 1] from additions and multiplications only, so that every machine
/// and browser computes the same bits (libm's `cos` differs between platforms in the last
/// place). Taylor series around the nearer of 0 and 1/2; the error is below 1e-12.
pub(crate) fn cos_pi(p: f64) -> f64 {
    if p > 0.5 {
        return -cos_pi(1.0 - p);
    }
    if p > 0.25 {
        return sin_pi(0.5 - p);
    }
    let x = std::f64::consts::PI * p;
    let x2 = x * x;
    let tail = 1.0 - x2 / 90.0 * (1.0 - x2 / 132.0 * (1.0 - x2 / 182.0));
    1.0 - x2 / 2.0 * (1.0 - x2 / 12.0 * (1.0 - x2 / 30.0 * (1.0 - x2 / 56.0 * tail)))
}

/// sin(pi * p) for p in [-1/4, 1/4].
pub(crate) fn sin_pi(p: f64) -> f64 {
    let x = std::f64::consts::PI * p;
    let x2 = x * x;
    let tail = 1.0 - x2 / 110.0 * (1.0 - x2 / 156.0 * (1.0 - x2 / 210.0));
    x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0 * tail))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_match_libm() {
        for i in 0..=1000 {
            let p = i as f64 / 1000.0;
            let c = (std::f64::consts::PI * p).cos();
            assert!((cos_pi(p) - c).abs() < 1e-12, "cos at {p}");
            if p <= 0.25 {
                let s = (std::f64::consts::PI * p).sin();
                assert!((sin_pi(p) - s).abs() < 1e-12, "sin at {p}");
            }
        }
    }

    #[test]
    fn schedules_follow_their_shapes() {
        let config = |schedule| TrainConfig {
            schedule,
            learning_rate: 0.01,
            epochs: 10,
            step_every: 3,
            step_factor: 0.5,
            ..TrainConfig::default()
        };
        let constant = config(Schedule::Constant);
        assert_eq!(learning_rate(&constant, 7, 5, 100), 0.01);
        let step = config(Schedule::Step);
        let rates: Vec<f64> = [0, 2, 3, 6, 9]
            .map(|e| learning_rate(&step, e, 0, 100))
            .to_vec();
        assert_eq!(rates, vec![0.01, 0.01, 0.005, 0.0025, 0.00125]);
        let cycle = config(Schedule::OneCycle);
        let at = |epoch, batch| learning_rate(&cycle, epoch, batch, 100);
        assert!((at(0, 0) - 0.0004).abs() < 1e-12);
        assert!(
            (at(3, 0) - 0.01).abs() < 1e-12,
            "the peak at 30%: {}",
            at(3, 0)
        );
        assert!(at(1, 0) < at(2, 0) && at(5, 0) > at(8, 0));
        println!("one-cycle rate at the last step: {:e}", at(9, 99));
        assert!(at(9, 99) < 1e-6);
    }
}
