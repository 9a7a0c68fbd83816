//! The one place that chooses and creates compute devices; everything else takes a `Device`.

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's `flex` CPU backend (SIMD128 in the browser).
    Cpu,
    /// burn-wgpu: WebGPU in the browser, Vulkan/Metal/DX12 natively.
    Gpu,
}

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

    /// The name shown to people: "cpu", "webgpu" (browser) or "wgpu" (native).
    pub fn label(&self) -> String {
        match (self.backend, cfg!(target_arch = "wasm32")) {
            (Backend::Cpu, _) => "cpu".into(),
            (Backend::Gpu, true) => "webgpu".into(),
            (Backend::Gpu, false) => "wgpu".into(),
        }
    }

    /// Initialises burn-wgpu on the default adapter. In a browser, call this only after
    /// `navigator.gpu.requestAdapter()` succeeded in JS: wgpu panics where WebGPU is absent.
    pub async fn gpu() -> Result<Self, String> {
        let device = Device::wgpu_options()
            .init_async()
            .await
            .map_err(|e| format!("WebGPU/wgpu could not start: {e}"))?;
        Ok(Self {
            backend: Backend::Gpu,
            device,
        })
    }
}
