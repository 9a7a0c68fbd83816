//! The recipe's settings, their defaults (the report's recipe) and their allowed ranges and
//! choices. They are stated once, here: `validate`, the CLI's flags and the page's form all use
//! them.

use serde::{Deserialize, Serialize};

use crate::augment::Augmentation;
use crate::error::Error;
use crate::loss::Loss;
use crate::network::{preset, presets, Network, BUDGET};
use crate::schedule::{Optimizer, Schedule};

/// The recipe, with the report's values as defaults. Every field is editable in the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub patience: usize,
    pub validation_split: f64,
    /// Use only the first `limit` images of the training split (quick runs); validation shrinks
    /// in the same proportion.
    pub limit: Option<usize>,
    pub seed: u64,
    pub network: Network,
    /// The most learnable parameters `network` may have.
    pub budget: usize,
    pub loss: Loss,
    pub optimizer: Optimizer,
    /// SGD's momentum.
    pub momentum: f64,
    pub schedule: Schedule,
    /// The step schedule's period, in epochs, and its factor.
    pub step_every: usize,
    pub step_factor: f64,
    /// Augmentation: the largest random shift (pixels) and rotation (degrees) of each image.
    pub shift: f64,
    pub rotation: f64,
    /// After each epoch, the batch-norm layers' running statistics are replaced by the plain
    /// average over this many training images, un-augmented (0: keep the running ones). Those
    /// come from the last few augmented batches, while validation, test and drawings are clean.
    pub norm_images: usize,
    /// Weight averaging: validation, the kept weights and predictions use an exponential moving
    /// average of the weights, `average ← d·average + (1 − d)·weights` after every step with
    /// `d = min(average_decay, (1 + t) / (10 + t))` at step t (the short warm-up keeps the first
    /// steps' random weights from lingering); 0 turns it off. Training itself is unchanged.
    pub average_decay: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 150,
            batch_size: 128,
            learning_rate: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-7,
            patience: 5,
            validation_split: 0.2,
            limit: None,
            seed: 42,
            network: Network::report(),
            budget: BUDGET,
            loss: Loss::CrossEntropy,
            optimizer: Optimizer::Adam,
            momentum: 0.9,
            schedule: Schedule::Constant,
            step_every: 10,
            step_factor: 0.5,
            shift: 0.0,
            rotation: 0.0,
            norm_images: 0,
            average_decay: 0.0,
        }
    }
}

impl TrainConfig {
    /// What preset `id` trains with: its network and the report's recipe, except for `best7k`,
    /// whose recipe the search (`mnist7k search`, `crate::search`) chose with it on the
    /// validation split.
    pub fn for_preset(id: &str) -> Result<Self, Error> {
        let network = preset(id)?;
        Ok(match id {
            "best7k" => Self {
                network,
                ..Self::long_schedule()
            },
            _ => Self {
                network,
                ..Self::default()
            },
        })
    }

    /// The report's recipe made short for batch-normalised networks: 15 epochs of one-cycle
    /// Adam peaking at 0.01, every epoch kept in the running (patience 15: the kept epoch is
    /// still the one of lowest validation loss), light augmentation.
    pub fn short_schedule() -> Self {
        Self {
            epochs: 15,
            patience: 15,
            learning_rate: 0.01,
            schedule: Schedule::OneCycle,
            shift: 1.0,
            rotation: 8.0,
            ..Self::default()
        }
    }

    /// The short schedule stretched to the budget's 20 epochs, with stronger augmentation
    /// (shifts up to 2 px, rotations up to 10 degrees): the best7k preset's recipe.
    pub fn long_schedule() -> Self {
        Self {
            epochs: 20,
            patience: 20,
            shift: 2.0,
            rotation: 10.0,
            ..Self::short_schedule()
        }
    }

    /// The recipe in words, for a log or a report.
    pub fn recipe(&self) -> String {
        let schedule = match self.schedule {
            Schedule::Constant => format!("a constant learning rate of {}", self.learning_rate),
            Schedule::Step => format!(
                "a learning rate of {} times {} every {} epochs",
                self.learning_rate, self.step_factor, self.step_every
            ),
            Schedule::OneCycle => {
                format!(
                    "a one-cycle learning rate peaking at {}",
                    self.learning_rate
                )
            }
        };
        let augmentation = if self.augmentation().is_off() {
            "no augmentation".to_string()
        } else {
            format!(
                "shifts up to {} px and rotations up to {} degrees",
                self.shift, self.rotation
            )
        };
        let loss = match self.loss {
            Loss::CrossEntropy => "cross-entropy",
            Loss::Mse => "mean squared error",
            Loss::Mae => "mean absolute error",
        };
        let optimizer = match self.optimizer {
            Optimizer::Adam => "Adam".to_string(),
            Optimizer::Sgd => format!("SGD (momentum {})", self.momentum),
        };
        let epochs = match self.epochs {
            1 => "1 epoch".to_string(),
            n => format!("{n} epochs"),
        };
        let statistics = match self.norm_images {
            0 => String::new(),
            n => format!(
                ", batch-norm statistics from {} clean training images",
                crate::network::thousands(n)
            ),
        };
        let averaging = match self.average_decay {
            0.0 => String::new(),
            decay => format!(", weights averaged (decay up to {decay})"),
        };
        format!(
            "{epochs} at most (patience {}), batch {}, {optimizer} with {schedule}, {loss}, {augmentation}{statistics}{averaging}",
            self.patience, self.batch_size
        )
    }

    /// The weight average's decay at optimizer step `step` (counted from 1), or `None` without
    /// averaging. There is nothing to decay at step 1: the average starts as its weights.
    pub fn average_decay_at(&self, step: usize) -> Option<f32> {
        (self.average_decay > 0.0).then(|| {
            let t = step as f32;
            (self.average_decay as f32).min((1.0 + t) / (10.0 + t))
        })
    }

    pub fn augmentation(&self) -> Augmentation {
        Augmentation {
            shift: self.shift,
            rotation: self.rotation,
        }
    }
}

/// A preset with what it trains with, for the page: choosing one sets the network and the recipe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresetRecipe {
    pub id: &'static str,
    pub name: &'static str,
    pub network: Network,
    pub settings: TrainConfig,
    /// `settings` in words.
    pub recipe: String,
}

/// Every preset with its settings, the report's first.
pub fn preset_recipes() -> Vec<PresetRecipe> {
    presets()
        .into_iter()
        .map(|p| {
            let settings = TrainConfig::for_preset(p.id).expect("a listed preset");
            PresetRecipe {
                id: p.id,
                name: p.name,
                network: p.network,
                recipe: settings.recipe(),
                settings,
            }
        })
        .collect()
}

/// A setting chosen from names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Choice {
    pub key: &'static str,
    pub name: &'static str,
    pub choices: &'static [&'static str],
    pub default: &'static str,
}

pub const CHOICES: [Choice; 3] = [
    Choice {
        key: "loss",
        name: "loss",
        choices: &["cross_entropy", "mse", "mae"],
        default: "cross_entropy",
    },
    Choice {
        key: "optimizer",
        name: "optimizer",
        choices: &["adam", "sgd"],
        default: "adam",
    },
    Choice {
        key: "schedule",
        name: "learning-rate schedule",
        choices: &["constant", "step", "one_cycle"],
        default: "constant",
    },
];

/// One setting's allowed values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bound {
    /// The `TrainConfig` field.
    pub key: &'static str,
    /// What people call it.
    pub name: &'static str,
    pub min: f64,
    pub max: f64,
    /// Whether `min` itself is allowed (a learning rate of 0 is not).
    pub min_allowed: bool,
    pub max_allowed: bool,
    pub integer: bool,
}

const fn bound(key: &'static str, name: &'static str, min: f64, max: f64) -> Bound {
    Bound {
        key,
        name,
        min,
        max,
        min_allowed: true,
        max_allowed: true,
        integer: true,
    }
}

const fn real(key: &'static str, name: &'static str, min: f64, max: f64) -> Bound {
    Bound {
        integer: false,
        ..bound(key, name, min, max)
    }
}

const fn open_max(b: Bound) -> Bound {
    Bound {
        max_allowed: false,
        ..b
    }
}

const fn open(b: Bound) -> Bound {
    Bound {
        min_allowed: false,
        ..open_max(b)
    }
}

/// JavaScript numbers hold integers exactly up to 2^53: a seed from the URL must survive.
const LARGEST_SEED: f64 = 9_007_199_254_740_991.0;

pub const BOUNDS: [Bound; 18] = [
    bound("epochs", "epochs", 1.0, 1000.0),
    bound("batch_size", "batch size", 1.0, 4096.0),
    open(real("learning_rate", "learning rate", 0.0, 1.0)),
    open_max(real("beta1", "Adam's beta1", 0.0, 1.0)),
    open_max(real("beta2", "Adam's beta2", 0.0, 1.0)),
    Bound {
        min_allowed: false,
        ..real("epsilon", "Adam's epsilon", 0.0, 1.0)
    },
    bound("patience", "patience", 0.0, 1000.0),
    open(real("validation_split", "validation split", 0.0, 1.0)),
    bound("limit", "training-image limit", 1.0, 60_000.0),
    bound("seed", "seed", 0.0, LARGEST_SEED),
    bound("budget", "parameter budget", 1.0, 1_000_000.0),
    open_max(real("momentum", "SGD's momentum", 0.0, 1.0)),
    bound("step_every", "epochs per learning-rate step", 1.0, 1000.0),
    open(real("step_factor", "learning-rate step factor", 0.0, 1.0)),
    real("shift", "augmentation shift (pixels)", 0.0, 4.0),
    real("rotation", "augmentation rotation (degrees)", 0.0, 30.0),
    bound(
        "norm_images",
        "clean images for batch-norm statistics",
        0.0,
        60_000.0,
    ),
    open_max(real("average_decay", "weight-averaging decay", 0.0, 1.0)),
];

impl Bound {
    fn check(&self, value: f64) -> Result<f64, Error> {
        let above = value > self.min || (self.min_allowed && value == self.min);
        let below = value < self.max || (self.max_allowed && value == self.max);
        if !(above && below) {
            let low = if self.min_allowed {
                "at least"
            } else {
                "greater than"
            };
            let high = if self.max_allowed {
                "at most"
            } else {
                "less than"
            };
            return Err(Error::Config(format!(
                "{} must be {low} {} and {high} {}, got {value}",
                self.name, self.min, self.max
            )));
        }
        if self.integer && value.fract() != 0.0 {
            return Err(Error::Config(format!(
                "{} must be a whole number, got {value}",
                self.name
            )));
        }
        Ok(value)
    }
}

fn bound_of(key: &str) -> Result<&'static Bound, Error> {
    BOUNDS
        .iter()
        .find(|b| b.key == key)
        .ok_or_else(|| Error::Config(format!("there is no setting called {key:?}")))
}

impl TrainConfig {
    /// Sets one field from a number, checked against its bound (the CLI's flags, the page's form).
    pub fn set(&mut self, key: &str, value: f64) -> Result<(), Error> {
        let value = bound_of(key)?.check(value)?;
        // Checked above: integers are whole and in range, so the casts are exact.
        match key {
            "epochs" => self.epochs = value as usize,
            "batch_size" => self.batch_size = value as usize,
            "learning_rate" => self.learning_rate = value,
            "beta1" => self.beta1 = value as f32,
            "beta2" => self.beta2 = value as f32,
            "epsilon" => self.epsilon = value as f32,
            "patience" => self.patience = value as usize,
            "validation_split" => self.validation_split = value,
            "limit" => self.limit = Some(value as usize),
            "seed" => self.seed = value as u64,
            "budget" => self.budget = value as usize,
            "momentum" => self.momentum = value,
            "step_every" => self.step_every = value as usize,
            "step_factor" => self.step_factor = value,
            "shift" => self.shift = value,
            "rotation" => self.rotation = value,
            "norm_images" => self.norm_images = value as usize,
            "average_decay" => self.average_decay = value,
            _ => unreachable!("every bound names a field"),
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "epochs" => self.epochs as f64,
            "batch_size" => self.batch_size as f64,
            "learning_rate" => self.learning_rate,
            "beta1" => self.beta1.into(),
            "beta2" => self.beta2.into(),
            "epsilon" => self.epsilon.into(),
            "patience" => self.patience as f64,
            "validation_split" => self.validation_split,
            "limit" => return self.limit.map(|l| l as f64),
            "seed" => self.seed as f64,
            "budget" => self.budget as f64,
            "momentum" => self.momentum,
            "step_every" => self.step_every as f64,
            "step_factor" => self.step_factor,
            "shift" => self.shift,
            "rotation" => self.rotation,
            "norm_images" => self.norm_images as f64,
            "average_decay" => self.average_decay,
            _ => unreachable!("every bound names a field"),
        })
    }

    /// Sets a named choice (`loss`, `optimizer`, `schedule`) from its name.
    pub fn choose(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let choice = CHOICES
            .iter()
            .find(|c| c.key == key)
            .ok_or_else(|| Error::Config(format!("there is no setting called {key:?}")))?;
        if !choice.choices.contains(&value) {
            return Err(Error::Config(format!(
                "{} must be one of {}, got {value:?}",
                choice.name,
                choice.choices.join(", ")
            )));
        }
        let value = serde_json::Value::from(value);
        // The names above are the enums' serde names (a test checks every one).
        let parsed = |e: serde_json::Error| Error::Config(format!("{}: {e}", choice.name));
        match key {
            "loss" => self.loss = serde_json::from_value(value).map_err(parsed)?,
            "optimizer" => self.optimizer = serde_json::from_value(value).map_err(parsed)?,
            _ => self.schedule = serde_json::from_value(value).map_err(parsed)?,
        }
        Ok(())
    }

    /// Settings as the page sends them: an object of numbers (`limit` may be null for "all"),
    /// choice names, and the network's description; missing fields keep the report's values.
    /// Names the first bad field, then checks the network against the budget.
    pub fn from_json(settings: &serde_json::Value) -> Result<Self, Error> {
        let object = settings
            .as_object()
            .ok_or_else(|| Error::Config(format!("settings must be an object, got {settings}")))?;
        let mut config = Self::default();
        for (key, value) in object {
            if key == "network" {
                config.network = serde_json::from_value(value.clone())
                    .map_err(|e| Error::Config(format!("the network is not readable: {e}")))?;
                continue;
            }
            if CHOICES.iter().any(|c| c.key == key) {
                match value {
                    serde_json::Value::String(name) => config.choose(key, name)?,
                    other => {
                        return Err(Error::Config(format!("{key} must be a name, got {other}")))
                    }
                }
                continue;
            }
            let name = bound_of(key)?.name;
            match value {
                serde_json::Value::Null if key == "limit" => config.limit = None,
                serde_json::Value::Number(n) => config.set(key, n.as_f64().unwrap_or(f64::NAN))?,
                other => {
                    return Err(Error::Config(format!(
                        "{name} must be a number, got {other}"
                    )))
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), Error> {
        for bound in &BOUNDS {
            if let Some(value) = self.get(bound.key) {
                bound.check(value)?;
            }
        }
        self.network.validate(self.budget)?;
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(settings: serde_json::Value) -> String {
        TrainConfig::from_json(&settings).unwrap_err().to_string()
    }

    #[test]
    fn the_defaults_are_the_reports_recipe_and_within_bounds() {
        let c = TrainConfig::default();
        assert_eq!((c.epochs, c.batch_size, c.patience), (150, 128, 5));
        assert_eq!(
            (c.learning_rate, c.epsilon, c.validation_split),
            (1e-3, 1e-7, 0.2)
        );
        assert!(c.validate().is_ok());
        assert_eq!(TrainConfig::from_json(&json!({})).unwrap(), c);
    }

    #[test]
    fn the_page_settings_are_parsed_and_checked() {
        let c = TrainConfig::from_json(&json!({
            "epochs": 3, "batch_size": 64, "learning_rate": 0.003, "limit": null, "seed": 7
        }))
        .unwrap();
        assert_eq!((c.epochs, c.batch_size, c.limit, c.seed), (3, 64, None, 7));
        assert_eq!(c.learning_rate, 0.003);
        assert_eq!(
            TrainConfig::from_json(&json!({ "limit": 6000 }))
                .unwrap()
                .limit,
            Some(6000)
        );
    }

    #[test]
    fn every_bad_setting_is_named_with_its_range() {
        for (settings, expected) in [
            (
                json!({ "epsilon": 0 }),
                "invalid setting: Adam's epsilon must be greater than 0 and at most 1, got 0",
            ),
            (
                json!({ "learning_rate": "abc" }),
                "invalid setting: learning rate must be a number, got \"abc\"",
            ),
            (
                json!({ "learning_rate": 1 }),
                "invalid setting: learning rate must be greater than 0 and less than 1, got 1",
            ),
            (
                json!({ "batch_size": 0 }),
                "invalid setting: batch size must be at least 1 and at most 4096, got 0",
            ),
            (
                json!({ "epochs": -1 }),
                "invalid setting: epochs must be at least 1 and at most 1000, got -1",
            ),
            (
                json!({ "epochs": 2.5 }),
                "invalid setting: epochs must be a whole number, got 2.5",
            ),
            (
                json!({ "beta1": 1 }),
                "invalid setting: Adam's beta1 must be at least 0 and less than 1, got 1",
            ),
            (
                json!({ "limit": 0 }),
                "invalid setting: training-image limit must be at least 1 and at most 60000, got 0",
            ),
            (
                json!({ "epochs": null }),
                "invalid setting: epochs must be a number, got null",
            ),
            (
                json!({ "speed": 1 }),
                "invalid setting: there is no setting called \"speed\"",
            ),
            (
                json!([1, 2]),
                "invalid setting: settings must be an object, got [1,2]",
            ),
        ] {
            assert_eq!(message(settings.clone()), expected, "{settings}");
        }
    }

    #[test]
    fn choices_and_the_network_are_read_and_checked() {
        let c = TrainConfig::from_json(&json!({
            "loss": "mse", "optimizer": "sgd", "schedule": "one_cycle", "momentum": 0.8,
            "shift": 2, "rotation": 10,
            "network": crate::network::presets()[1].network,
        }))
        .unwrap();
        assert_eq!(
            (c.loss, c.optimizer, c.schedule),
            (Loss::Mse, Optimizer::Sgd, Schedule::OneCycle)
        );
        assert_eq!((c.momentum, c.shift, c.rotation), (0.8, 2.0, 10.0));
        assert_eq!(c.network, crate::network::presets()[1].network);
        // Every listed name parses, and the defaults are the report's recipe.
        for choice in CHOICES {
            for name in choice.choices {
                TrainConfig::default().choose(choice.key, name).unwrap();
            }
            let value = serde_json::to_value(TrainConfig::default()).unwrap()[choice.key].clone();
            assert_eq!(value, choice.default, "{}", choice.key);
        }
        for (settings, expected) in [
            (
                json!({ "loss": "hinge" }),
                "invalid setting: loss must be one of cross_entropy, mse, mae, got \"hinge\"",
            ),
            (
                json!({ "optimizer": 1 }),
                "invalid setting: optimizer must be a name, got 1",
            ),
            (
                json!({ "budget": 5000 }),
                "invalid network: the network has 6,722 parameters, over the budget of 5,000; \
                 the largest layer is dense (2,570)",
            ),
            (
                json!({ "network": { "layers": [{ "type": "conv9d" }] } }),
                "invalid setting: the network is not readable: unknown variant `conv9d`, expected \
                 one of `conv2d`, `maxpool2d`, `avgpool2d`, `globalavgpool`, `batchnorm`, \
                 `dropout`, `flatten`, `dense`",
            ),
            (
                json!({ "rotation": 45 }),
                "invalid setting: augmentation rotation (degrees) must be at least 0 and at most \
                 30, got 45",
            ),
        ] {
            assert_eq!(message(settings.clone()), expected, "{settings}");
        }
    }

    #[test]
    fn validate_checks_a_config_built_in_code() {
        let bad = TrainConfig {
            learning_rate: f64::NAN,
            ..TrainConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "invalid setting: learning rate must be greater than 0 and less than 1, got NaN"
        );
    }
}
