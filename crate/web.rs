//! The wasm-bindgen API the page's worker calls: conversions between JS values and the native
//! [`Session`], nothing more. A failure becomes a JS `Error` whose `kind` and `recovery` say what
//! went wrong and what the page should do (see [`crate::error`]).

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::backend::Backend;
use crate::bench::BenchConfig;
use crate::config::{preset_recipes, TrainConfig, BOUNDS, CHOICES};
use crate::data::DATA_FILES;
use crate::error::{Error, Report};
use crate::history::Checkpoint;
use crate::network::Network;
use crate::run::Run;
use crate::session::Session;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// `initThreadPool(n)`, in the all-cores CPU module only: starts its n rayon workers, which
/// share the module's memory.
#[cfg(threads)]
pub use wasm_bindgen_rayon::init_thread_pool;

fn to_js(value: &impl Serialize) -> JsValue {
    // Plain data (numbers, strings, arrays, maps) always converts.
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::NULL)
}

fn from_js<T: serde::de::DeserializeOwned>(value: JsValue, what: &str) -> Result<T, Error> {
    serde_wasm_bindgen::from_value(value).map_err(|e| Error::Input(format!("invalid {what}: {e}")))
}

/// Awaits what a JS callback returned (a value or a Promise).
async fn settle(returned: Result<JsValue, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(js_sys::Promise::resolve(&returned?)).await
}

/// The four data file names, in the order `loadData` takes them.
#[wasm_bindgen(js_name = dataFiles)]
pub fn data_files() -> Vec<String> {
    DATA_FILES.iter().map(|name| name.to_string()).collect()
}

/// Every setting's allowed range, for the page's form.
#[wasm_bindgen(js_name = settingsBounds)]
pub fn settings_bounds() -> JsValue {
    to_js(&BOUNDS)
}

/// The named settings' choices (loss, optimizer, schedule), for the page's form.
#[wasm_bindgen(js_name = settingsChoices)]
pub fn settings_choices() -> JsValue {
    to_js(&CHOICES)
}

/// The presets, `[{ id, name, network, settings, recipe }]`, the report's first.
#[wasm_bindgen]
pub fn presets() -> JsValue {
    to_js(&preset_recipes())
}

#[derive(Serialize)]
struct Refusal {
    message: String,
    /// The offending layer (0-based), when one layer is the reason.
    layer: Option<usize>,
}

#[derive(Serialize)]
struct Summarised {
    summary: Option<crate::network::Summary>,
    error: Option<Refusal>,
}

/// `{ summary, error }` for a network and a budget: the table as far as it goes and the first
/// reason to refuse the network, or `error` alone for an object that is not a network.
#[wasm_bindgen(js_name = networkSummary)]
pub fn network_summary(network: JsValue, budget: usize) -> JsValue {
    let summarised = match from_js::<Network>(network, "network") {
        Ok(network) => {
            let (summary, error) = network.summary(budget);
            Summarised {
                summary: Some(summary),
                error: error.map(|e| Refusal {
                    layer: e.layer(),
                    message: e.to_string(),
                }),
            }
        }
        Err(e) => Summarised {
            summary: None,
            error: Some(Refusal {
                message: e.to_string(),
                layer: None,
            }),
        },
    };
    to_js(&summarised)
}

/// A run file (exported by the page, written by the CLI's `--json`), checked.
#[wasm_bindgen(js_name = readRun)]
pub fn read_run(json: &str) -> Result<JsValue, JsValue> {
    Run::from_json(json)
        .map(|run| to_js(&run))
        .map_err(|e| fail(e, Backend::Cpu))
}

/// The text form a link carries.
#[wasm_bindgen(js_name = networkToText)]
pub fn network_to_text(network: JsValue) -> Result<String, JsValue> {
    let network: Network = from_js(network, "network").map_err(|e| fail(e, Backend::Cpu))?;
    Ok(network.to_string())
}

#[wasm_bindgen(js_name = networkFromText)]
pub fn network_from_text(text: &str) -> Result<JsValue, JsValue> {
    let network: Network = text
        .parse()
        .map_err(|e| fail(Error::Network(e), Backend::Cpu))?;
    Ok(to_js(&network))
}

/// A JS `Error` with the failure's `kind` and `recovery`.
fn fail(error: Error, backend: Backend) -> JsValue {
    let report = Report::new(&error, backend);
    let js = js_sys::Error::new(&report.message);
    for (key, value) in [
        ("kind", to_js(&report.kind)),
        ("recovery", to_js(&report.recovery)),
    ] {
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&js, &key.into(), &value);
    }
    js.into()
}

#[wasm_bindgen]
#[derive(Default)]
pub struct Mnist7k {
    session: Session,
}

impl Mnist7k {
    fn fail(&self, error: Error) -> JsValue {
        fail(error, self.session.backend().unwrap_or(Backend::Cpu))
    }
}

#[wasm_bindgen]
impl Mnist7k {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self::default()
    }

    #[wasm_bindgen(js_name = loadData)]
    pub fn load_data(
        &self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
    ) -> Result<JsValue, JsValue> {
        let files = [train_images, train_labels, test_images, test_labels];
        let summary = self.session.load_data(files).map_err(|e| self.fail(e))?;
        Ok(to_js(&summary))
    }

    #[wasm_bindgen(js_name = useBackend)]
    pub async fn use_backend(&self, name: String) -> Result<String, JsValue> {
        self.session
            .use_backend(&name)
            .await
            .map_err(|e| self.fail(e))
    }

    /// `config`: the page's settings (see `TrainConfig::from_json`); `resume`: a checkpoint or
    /// null; `on_event(event)` returns (a Promise of) `false` to stop.
    pub async fn train(
        &self,
        config: JsValue,
        resume: JsValue,
        on_event: js_sys::Function,
    ) -> Result<JsValue, JsValue> {
        let run = async {
            let config = TrainConfig::from_json(&from_js(config, "training settings")?)?;
            let resume: Option<Checkpoint> = from_js(resume, "checkpoint")?;
            let on_event = |event: &_| {
                let returned = on_event.call1(&JsValue::NULL, &to_js(event));
                // A throwing listener stops the run; the weights trained so far are kept.
                async move {
                    settle(returned)
                        .await
                        .is_ok_and(|v| v.as_bool() != Some(false))
                }
            };
            self.session.train(config, resume, on_event).await
        };
        run.await.map(|s| to_js(&s)).map_err(|e| self.fail(e))
    }

    pub fn checkpoint(&self) -> JsValue {
        to_js(&self.session.checkpoint())
    }

    pub async fn predict(&self, pixels: Vec<f32>) -> Result<Vec<f32>, JsValue> {
        self.session.predict(pixels).await.map_err(|e| self.fail(e))
    }

    /// `{ filters, activations, probabilities }` of the weights metrics use, for a drawing.
    pub fn inside(&self, pixels: Vec<f32>) -> Result<JsValue, JsValue> {
        let inside = self.session.inside(pixels);
        inside.map(|i| to_js(&i)).map_err(|e| self.fail(e))
    }

    pub fn preprocess(
        &self,
        ink: &[f32],
        width: usize,
        height: usize,
    ) -> Result<Option<Vec<f32>>, JsValue> {
        self.session
            .preprocess(ink, width, height)
            .map_err(|e| self.fail(e))
    }

    /// `on_progress(done, total)` may return a Promise: the next chunk waits for it.
    pub async fn metrics(&self, on_progress: js_sys::Function) -> Result<JsValue, JsValue> {
        let on_progress = |done: usize, total: usize| {
            let returned = on_progress.call2(&JsValue::NULL, &done.into(), &total.into());
            // A failing listener only loses a progress update, never the metrics.
            async move {
                let _ = settle(returned).await;
            }
        };
        let report = self.session.metrics(on_progress).await;
        report.map(|r| to_js(&r)).map_err(|e| self.fail(e))
    }

    /// `config`: a partial `BenchConfig`, or undefined for the defaults.
    pub async fn bench(&self, config: JsValue) -> Result<JsValue, JsValue> {
        let run = async {
            let config: BenchConfig = if config.is_undefined() || config.is_null() {
                BenchConfig::default()
            } else {
                from_js(config, "benchmark settings")?
            };
            self.session.bench(config).await
        };
        run.await.map(|r| to_js(&r)).map_err(|e| self.fail(e))
    }

    #[wasm_bindgen(js_name = testImage)]
    pub fn test_image(&self, index: usize) -> Result<Vec<u8>, JsValue> {
        self.session.test_image(index).map_err(|e| self.fail(e))
    }

    #[wasm_bindgen(js_name = weightsJson)]
    pub fn weights_json(&self) -> Option<String> {
        self.session.weights().map(|w| w.to_json())
    }

    /// Returns the network the file holds.
    #[wasm_bindgen(js_name = loadWeights)]
    pub fn load_weights(&self, json: &str) -> Result<JsValue, JsValue> {
        let network = self.session.load_weights(json).map_err(|e| self.fail(e))?;
        Ok(to_js(&network))
    }
}
