//! The one place that names backends and creates compute devices; everything else takes a
//! `Device`.

use std::sync::Mutex;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex` CPU backend (SIMD128 in the browser).
    Cpu,
    /// burn-wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively.
    Gpu,
}

/// The GPU backend's name where this build runs.
const GPU_NAME: &str = if cfg!(target_arch = "wasm32") {
    "webgpu"
} else {
    "wgpu"
};

impl Backend {
    /// "cpu", or "webgpu" in a browser and "wgpu" natively (either is accepted everywhere).
    pub fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "cpu" => Ok(Self::Cpu),
            "webgpu" | "wgpu" => Ok(Self::Gpu),
            other => Err(Error::Config(format!(
                "unknown backend {other:?}: use cpu or {GPU_NAME}"
            ))),
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => GPU_NAME,
        }
    }
}

/// burn starts a wgpu runtime once per process and refuses a second start, so the first device is
/// kept: switching back to the GPU (after "auto" measured both backends, say) reuses it.
static GPU: Mutex<Option<Device>> = Mutex::new(None);

#[derive(Debug, Clone)]
pub struct ComputeDevice {
    pub backend: Backend,
    pub device: Device,
}

impl ComputeDevice {
    pub fn cpu() -> Self {
        Self {
            backend: Backend::Cpu,
            device: Device::flex(),
        }
    }

    pub fn label(&self) -> String {
        self.backend.label().into()
    }

    /// burn-wgpu on the default adapter, initialised on the first call. In a browser, call this
    /// only after `navigator.gpu.requestAdapter()` succeeded in JS: wgpu panics where WebGPU is
    /// absent.
    pub async fn gpu() -> Result<Self, Error> {
        let gpu = |device| Self {
            backend: Backend::Gpu,
            device,
        };
        if let Some(device) = GPU.lock().ok().and_then(|kept| kept.clone()) {
            return Ok(gpu(device));
        }
        #[cfg(threads)]
        return Err(Error::Device(format!(
            "the all-cores CPU module has no {GPU_NAME}: the page loads the other module for it"
        )));
        #[cfg(not(threads))]
        {
            let device = Device::wgpu_options()
                .init_async()
                .await
                .map_err(|e| Error::Device(format!("{GPU_NAME} could not start: {e}")))?;
            if let Ok(mut kept) = GPU.lock() {
                *kept = Some(device.clone());
            }
            Ok(gpu(device))
        }
    }

    /// The device for a backend name (see [`Backend::parse`]).
    pub async fn named(name: &str) -> Result<Self, Error> {
        match Backend::parse(name)? {
            Backend::Cpu => Ok(Self::cpu()),
            Backend::Gpu => Self::gpu().await,
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_and_unknown_ones_are_refused() {
        assert_eq!(Backend::parse("cpu"), Ok(Backend::Cpu));
        assert_eq!(Backend::parse("webgpu"), Ok(Backend::Gpu));
        assert_eq!(Backend::parse("wgpu"), Ok(Backend::Gpu));
        assert_eq!(
            Backend::parse("foo").unwrap_err().to_string(),
            "invalid setting: unknown backend \"foo\": use cpu or wgpu"
        );
        assert_eq!(Backend::Gpu.label(), "wgpu");
        let cpu = pollster::block_on(ComputeDevice::named("cpu")).unwrap();
        assert_eq!(cpu.label(), "cpu");
    }
}
