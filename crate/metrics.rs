//! Confusion matrix and a classification report in the shape of scikit-learn's (and the report's).

use serde::{Deserialize, Serialize};

use crate::model::CLASSES;

/// `counts[true][predicted]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub counts: [[u64; CLASSES]; CLASSES],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Per-class scores plus accuracy and the macro and support-weighted averages. For single-label
/// classification the micro average of precision, recall and F1 all equal the accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub classes: Vec<ClassScores>,
    pub accuracy: f64,
    pub micro_avg: ClassScores,
    pub macro_avg: ClassScores,
    pub weighted_avg: ClassScores,
}

/// Division that reports 0 for an empty denominator, as scikit-learn does with `zero_division=0`.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn harmonic(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

impl ConfusionMatrix {
    pub fn from_predictions(truth: &[u8], predicted: &[u8]) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per label");
        let mut matrix = Self::default();
        for (&t, &p) in truth.iter().zip(predicted) {
            matrix.counts[t as usize][p as usize] += 1;
        }
        matrix
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    pub fn correct(&self) -> u64 {
        (0..CLASSES).map(|c| self.counts[c][c]).sum()
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    fn class_scores(&self, class: usize) -> ClassScores {
        let support: u64 = self.counts[class].iter().sum();
        let predicted: u64 = self.counts.iter().map(|row| row[class]).sum();
        let hits = self.counts[class][class];
        let precision = ratio(hits, predicted);
        let recall = ratio(hits, support);
        ClassScores {
            precision,
            recall,
            f1: harmonic(precision, recall),
            support,
        }
    }

    pub fn report(&self) -> ClassificationReport {
        let classes: Vec<ClassScores> = (0..CLASSES).map(|c| self.class_scores(c)).collect();
        let total = self.total();
        let average = |weight: &dyn Fn(&ClassScores) -> f64, norm: f64| {
            let sum = |field: fn(&ClassScores) -> f64| {
                classes.iter().map(|s| weight(s) * field(s)).sum::<f64>() / norm
            };
            ClassScores {
                precision: sum(|s| s.precision),
                recall: sum(|s| s.recall),
                f1: sum(|s| s.f1),
                support: total,
            }
        };
        let accuracy = self.accuracy();
        ClassificationReport {
            accuracy,
            micro_avg: ClassScores {
                precision: accuracy,
                recall: accuracy,
                f1: accuracy,
                support: total,
            },
            macro_avg: average(&|_| 1.0, CLASSES as f64),
            weighted_avg: average(&|s| s.support as f64, total.max(1) as f64),
            classes,
        }
    }
}

impl ClassificationReport {
    /// Plain-text table like scikit-learn's `classification_report(digits=4)`.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:>12} {:>9} {:>9} {:>9} {:>9}\n",
            "", "precision", "recall", "f1-score", "support"
        );
        let line = |name: &str, s: &ClassScores| {
            format!(
                "{name:>12} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
                s.precision, s.recall, s.f1, s.support
            )
        };
        for (class, scores) in self.classes.iter().enumerate() {
            out += &line(&class.to_string(), scores);
        }
        out += &format!(
            "\n{:>12} {:>9} {:>9} {:>9.4} {:>9}\n",
            "accuracy", "", "", self.accuracy, self.micro_avg.support
        );
        out += &line("micro avg", &self.micro_avg);
        out += &line("macro avg", &self.macro_avg);
        out += &line("weighted avg", &self.weighted_avg);
        out
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn scores_match_a_hand_computed_case() {
        // Class 0: 3 true, 2 right, 1 called 1. Class 1: 2 true, 1 right, 1 called 0.
        // Class 2: 1 true, called 1. Nothing else appears.
        let truth = [0, 0, 0, 1, 1, 2];
        let predicted = [0, 0, 1, 1, 0, 1];
        let matrix = ConfusionMatrix::from_predictions(&truth, &predicted);
        assert_eq!(matrix.counts[0][..3], [2, 1, 0]);
        assert_eq!(matrix.counts[1][..3], [1, 1, 0]);
        assert_eq!(matrix.counts[2][..3], [0, 1, 0]);
        let report = matrix.report();
        let zero = report.classes[0];
        assert!(close(zero.precision, 2.0 / 3.0) && close(zero.recall, 2.0 / 3.0));
        assert!(close(zero.f1, 2.0 / 3.0));
        let one = report.classes[1];
        assert!(close(one.precision, 1.0 / 3.0) && close(one.recall, 0.5));
        assert!(close(one.f1, 2.0 * (1.0 / 3.0) * 0.5 / (1.0 / 3.0 + 0.5)));
        assert_eq!(report.classes[2].f1, 0.0);
        assert_eq!(report.classes[2].support, 1);
        assert_eq!(report.classes[5].support, 0);
        assert!(close(report.accuracy, 0.5));
        assert!(close(report.micro_avg.f1, 0.5));
        // Macro averages over all ten classes, absent ones scoring 0 (zero_division=0).
        assert!(close(report.macro_avg.recall, (2.0 / 3.0 + 0.5) / 10.0));
        // Weighted by support 3, 2, 1 of 6.
        assert!(close(
            report.weighted_avg.precision,
            (3.0 * 2.0 / 3.0 + 2.0 / 3.0) / 6.0
        ));
        assert_eq!(report.weighted_avg.support, 6);
    }

    #[test]
    fn a_perfect_classifier_scores_one_everywhere_it_has_support() {
        let labels: Vec<u8> = (0..10).cycle().take(50).collect();
        let report = ConfusionMatrix::from_predictions(&labels, &labels).report();
        assert!(report.classes.iter().all(|s| s.f1 == 1.0 && s.support == 5));
        assert_eq!(report.macro_avg.f1, 1.0);
        assert!(report.to_table().contains("accuracy"));
    }
}
