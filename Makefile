# The two commands of the README. Each sets up what is missing first (idempotent).
.PHONY: serve test bench
serve:
	bash scripts/serve.sh
test:
	bash scripts/test.sh
