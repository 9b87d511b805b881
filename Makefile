# leadrelay — the commands a newcomer needs. `make help` lists them.
.PHONY: help run test lint fmt bench build clean update-free-mail update-role-addresses fuzz screenshots

CARGO ?= cargo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

run: ## Build and run the embedded pipeline, send the sample leads, keep serving
	./scripts/run.sh

test: ## Run the whole test suite (unit, HTTP end-to-end, crash recovery, the console in headless Chromium)
	./scripts/install-browser.sh
	$(CARGO) build --quiet -p leadrelay --bin leadrelay
	./target/debug/leadrelay --config config/leadrelay.toml rules test config/routing-cases.toml
	./scripts/with-moto.sh $(CARGO) test --workspace

screenshots: ## Regenerate docs/console/*.png, one per console page, in headless Chromium (1280x900)
	./scripts/install-browser.sh
	LEADRELAY_SCREENSHOTS=docs/console $(CARGO) test -p leadrelay-tests --test it \
		console_browser::screenshots -- --ignored --exact

lint: ## rustfmt, clippy (warnings as errors), the layer check (core pure, Lambdas lean) and no import loop in the core
	python3 scripts/check-core-modules.py --tests
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	./scripts/check-layers.sh

fmt: ## Format the code
	$(CARGO) fmt --all
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml

bench: ## Stage-logic, routing and HTTP-enrichment benchmarks, and the embedded server under load
	$(CARGO) bench -p leadrelay-shared --bench stage_logic
	$(CARGO) bench -p leadrelay-shared --bench routing
	$(CARGO) bench -p leadrelay-shared --bench intake
	$(CARGO) bench -p leadrelay-providers --bench http_provider
	$(CARGO) bench -p leadrelay --bench embedded_load
	$(CARGO) bench -p leadrelay --bench claim_and_sla

.PHONY: bench-lambda
bench-lambda: ## Cold start of the eight Lambda functions (host release build, moto): init, first invocation, peak RSS
	./scripts/bench-lambda.sh

FUZZ_SECONDS ?= 300
fuzz: ## Fuzz every target in fuzz/ for FUZZ_SECONDS each (default 300; installs cargo-fuzz)
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

build: ## Release build of the leadrelay binary
	$(CARGO) build --release -p leadrelay

update-free-mail: ## Refresh the vendored free-mail domain list from npm (free-email-domains)
	./scripts/update-free-mail.sh

update-role-addresses: ## Refresh the vendored role-address list from npm (role-based-email-addresses)
	./scripts/update-role-addresses.sh

clean:
	$(CARGO) clean
	rm -rf .leadrelay

# --- AWS (SAM) -------------------------------------------------------------------------------
.PHONY: venv validate build-lambda

venv: ## Create/refresh .venv with the pinned tools (cfn-lint, SAM CLI, moto, cargo-lambda)
	./scripts/venv.sh

validate: venv ## Check template.yaml: cfn-lint, sam validate --lint, scripts/check_template.py
	.venv/bin/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 .venv/bin/sam validate --lint --template template.yaml
	.venv/bin/python scripts/check_template.py

build-lambda: venv ## Build the Lambda zips for arm64 with cargo-lambda (target/lambda/*)
	./scripts/build-lambda.sh
