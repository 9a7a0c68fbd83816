//! `cfg(threads)`: the browser's all-cores CPU module (wasm32 built with atomics by
//! `scripts/build-threads.sh`), which trains with rayon over Web Workers and leaves WebGPU to
//! the other module.
fn main() {
    // Without this cargo reruns the script, and rebuilds the crate, whenever any file of the
    // package changes: the page's scripts, the tests, a screenshot a test writes.
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(threads)");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let atomics = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|features| features.split(',').any(|f| f == "atomics"));
    if wasm && atomics {
        println!("cargo::rustc-cfg=threads");
        // One memory shared by the module's instances (one per thread), which the JS glue
        // creates and hands to each; every thread sets up its own thread-local storage.
        for arg in [
            "--shared-memory",
            "--import-memory",
            "--export=__wasm_init_tls",
            "--export=__tls_size",
            "--export=__tls_align",
            "--export=__tls_base",
        ] {
            println!("cargo::rustc-link-arg-cdylib={arg}");
        }
    }
}
