# The two commands of the README (each sets up what is missing first, idempotent), and the lints.
.PHONY: serve test lint dist
serve:
	bash scripts/serve.sh
# dist/ for any static file server, with pre-compressed copies (README: "Putting it online").
dist:
	bash scripts/dist.sh
test:
	bash scripts/test.sh
# Native and wasm32, every target (the wasm benchmark too). Not part of `test`: a cold clippy
# build of burn for both targets takes ~30 minutes on 2 cores.
lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --target wasm32-unknown-unknown --features bench -- -D warnings
