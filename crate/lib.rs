//! mnist7k: MNIST CNNs designed under a 7,000-parameter budget (the report's 6,722-parameter
//! network first), trained with burn natively or in a browser.
//!
//! Plain Rust, tested natively: [`session`] (what the page and the CLI drive: data, device,
//! training, Stop, resume, metrics, predictions, weights files), [`network`] (a network's
//! description, summary, validation and presets), [`model`] (its burn module), [`conv`] (3x3
//! convolutions, direct kernels on the CPU), [`data`] (IDX files), [`config`] (the recipe's
//! settings, their ranges and choices), [`training`] (the recipe), [`loss`], [`schedule`]
//! (optimizers and learning rates), [`optimizer`] (steps with a state that survives a reload), [`search`] (the best network under the budget), [`augment`] (shifts and rotations), [`rng`], [`history`] (early stopping),
//! [`evaluation`] and [`metrics`] (reports), [`weights`] (portable parameters), [`run`] (a kept run: the page's storage, the CLI's `--json`), [`pad`] (drawing
//! preprocessing), [`backend`] (device choice), [`threads`] (the CPU's) and [`error`] (failures by kind). `web` holds
//! the thin wasm-bindgen conversion layer.

pub mod augment;
pub mod backend;
pub mod bench;
pub mod clock;
pub mod config;
pub mod conv;
pub mod cpu;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod head;
pub mod history;
pub mod inside;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod network;
pub mod norm;
pub mod optimizer;
pub mod pad;
pub mod pointwise;
pub mod rng;
pub mod run;
pub mod schedule;
pub mod search;
pub mod session;
pub mod threads;
pub mod training;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;
