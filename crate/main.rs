// The CLI is native-only; wasm32 builds (the test harness compiles every target) get an empty main.
#[cfg(not(target_arch = "wasm32"))]
mod cli;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    cli::main();
}
