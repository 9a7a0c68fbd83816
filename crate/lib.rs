//! mnist7k: the report's 6,722-parameter MNIST CNN, trained with burn natively or in a browser.
//!
//! Plain Rust, tested natively: [`model`] (the network), [`conv`] (its convolutions, direct
//! kernels on the CPU), [`data`] (IDX files), [`training`] (the recipe), [`evaluation`] and
//! [`metrics`] (reports), [`weights`] (portable parameters), [`pad`] (drawing preprocessing) and
//! [`backend`] (device choice). `web` holds the thin wasm-bindgen layer.

pub mod backend;
pub mod bench;
pub mod clock;
pub mod conv;
pub mod data;
pub mod evaluation;
pub mod metrics;
pub mod model;
pub mod pad;
pub mod training;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;
