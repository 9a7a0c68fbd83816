//! mnist7k: the report's 6,722-parameter MNIST CNN, trained with burn natively or in a browser.
//!
//! Plain Rust, tested natively: [`session`] (what the page and the CLI drive: data, device,
//! training, Stop, resume, metrics, predictions, weights files), [`model`] (the network),
//! [`conv`] (its convolutions, direct kernels on the CPU), [`data`] (IDX files), [`config`] (the
//! recipe's settings and their ranges), [`training`] (the recipe), [`history`] (early stopping),
//! [`evaluation`] and [`metrics`] (reports), [`weights`] (portable parameters), [`pad`] (drawing
//! preprocessing), [`backend`] (device choice) and [`error`] (failures by kind). `web` holds
//! the thin wasm-bindgen conversion layer.

pub mod backend;
pub mod bench;
pub mod clock;
pub mod config;
pub mod conv;
pub mod data;
pub mod error;
pub mod evaluation;
pub mod history;
pub mod metrics;
pub mod model;
pub mod pad;
pub mod session;
pub mod training;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;
