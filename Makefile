# ccnp-spire: build, test and lint entry points. `make help` lists them.

GO          ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BIN         ?= .bin
FUZZTIME    ?= 15s
BENCHTIME   ?= 1s
# Static binaries: SPIRE's images are FROM scratch (no libc, no loader), so the
# plugins must not need cgo; -trimpath and no symbol tables keep builds
# reproducible and the image small. Tests keep cgo (the TPM simulator).
STATIC      ?= CGO_ENABLED=0
# Every binary knows its version and commit (internal/version; scripts/version
# says where they come from): no time stamp, so builds stay reproducible.
VERSION     ?= $(shell ./scripts/version | sed -n 1p)
COMMIT      ?= $(shell ./scripts/version | sed -n 2p)
VERSION_X   := -X github.com/ccnp-spire/ccnp-spire/internal/version.version=$(VERSION) -X github.com/ccnp-spire/ccnp-spire/internal/version.commit=$(COMMIT)
BUILDFLAGS  ?= -trimpath -ldflags='-s -w $(VERSION_X)'
IMAGE_REF   ?= ghcr.io/ccnp-spire/plugins:dev
IMAGE_VERSION ?= dev
# helm for deploy/'s render test, built from the Go module proxy (the network
# reaches no chart or binary repositories): ~4-11 min the first time on 2
# cores, then the Go build cache and the binary in $(TOOLS) serve it.
HELM_VERSION ?= v3.21.4
TOOLS       ?= $(BIN)/tools

.PHONY: help demo spire build image test test-e2e unit vet lint staticcheck fmt-check fuzz fuzz-smoke bench clean
.PHONY: release release-check notices

help:
	@echo "make demo        real SPIRE server + agent with the ccnp plugins on the simulated TDX; an SVID for a workload"
	@echo "make spire       build spire-server and spire-agent v1.13.3 into $(BIN)/"
	@echo "make build       build the ccnp CLI and the plugins, static, into $(BIN)/ (sim-capable agent plugins: $(BIN)/sim/)"
	@echo "make image       the plugins' OCI image, no daemon: $(BIN)/oci (OCI layout) and $(BIN)/ccnp-plugins.tar (docker load)"
	@echo "make test        vet, staticcheck, gofmt check and go test -race ./... (what CI runs)"
	@echo "make test-e2e    end-to-end tests with real SPIRE binaries (part of make test)"
	@echo "make lint        vet, staticcheck and gofmt check only"
	@echo "make fuzz-smoke  run every fuzz target for FUZZTIME (default 15s; what CI runs)"
	@echo "make fuzz        run every fuzz target for 5 min (FUZZTIME=... to change), report execs/s and new coverage"
	@echo "make bench       every benchmark beside its anchor (count 5): bench/results.md, results.json, plots"
	@echo "make release     static linux/amd64+arm64 binaries, SBOMs, notices and SHA256SUMS into dist/<version>/ (offline after go mod download)"
	@echo "make release-check  build the release binaries twice (second with an empty GOCACHE) and compare the bytes"
	@echo "make notices     regenerate the module table in NOTICE from the release SBOMs"

# SPIRE v1.13.3 from the separate tools/spire module. The first build takes
# about ten minutes on two cores; the Go build cache makes later ones fast.
spire: $(BIN)/spire-server $(BIN)/spire-agent

$(BIN)/spire-server $(BIN)/spire-agent: tools/spire/go.mod tools/spire/go.sum
	@mkdir -p $(BIN)
	@echo "building SPIRE v1.13.3 (first time: ~10 min on 2 cores; cached afterwards)"
	cd tools/spire && $(GO) build -o ../../$(BIN)/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent

demo: build spire
	$(BIN)/ccnp-demo -dir .demo -bin $(BIN)

# Production binaries in $(BIN)/ link no simulator. The demo and the e2e
# tests run agents on a simulated TD with the plugins built -tags ccnp_sim
# into $(BIN)/sim/ (cmd/deps_test.go checks what each build links).
build:
	@mkdir -p $(BIN)/sim
	$(STATIC) $(GO) build $(BUILDFLAGS) -o $(BIN)/ ./cmd/...
	$(STATIC) $(GO) build $(BUILDFLAGS) -tags ccnp_sim -o $(BIN)/sim/ ./cmd/ccnp-agent-nodeattestor ./cmd/ccnp-agent-workloadattestor

# The image the manifests and Helm values name: the static binaries under
# /opt/ccnp/bin on an empty base, reproducible (tools/image). Works offline.
image: build
	$(BIN)/ccnp-image -bin $(BIN) -layout $(BIN)/oci -tarball $(BIN)/ccnp-plugins.tar -ref $(IMAGE_REF) -version $(IMAGE_VERSION)

test: lint unit test-e2e

# End-to-end: real SPIRE server and agent with the plugins (build tag e2e).
test-e2e: build spire
	$(GO) test -tags e2e -count=1 -timeout 40m -v ./test/e2e ./test/spirelab ./bench/spireload

# The load and fault suite runs on its own with -v so that CI prints its
# figures (attestations, goroutines and heap before/after, outage timings).
$(TOOLS)/helm:
	@mkdir -p $(TOOLS)
	GOBIN=$(abspath $(TOOLS)) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# make build first: tools/image runs those very binaries in an empty root;
# deploy/ renders the Helm values with $(TOOLS)/helm.
unit: build $(TOOLS)/helm
	CCNP_STATIC_BIN=$(abspath $(BIN)) CCNP_HELM=$(abspath $(TOOLS)/helm) $(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/test/load$$')
	$(GO) test -race -count=1 -v ./test/load

lint: vet staticcheck fmt-check

vet:
	$(GO) vet ./...

staticcheck:
	$(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

fuzz-smoke:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz

# Long local campaign: 5 min per target unless FUZZTIME is given on the
# command line or in the environment.
fuzz:
	FUZZTIME=$(if $(filter command line environment,$(origin FUZZTIME)),$(FUZZTIME),5m) ./scripts/fuzz

# Every benchmark beside its anchor, -count 5, medians with spread:
# bench/results.md, bench/results.json and the PNG plots (gonum, in the
# separate module bench/plots). About 10 minutes on 2 cores, 2.5 of them
# end to end through spire-server (hence spire).
bench: build spire
	$(GO) run ./bench/cmd/ccnp-bench -out bench -plugin $(BIN)/ccnp-server-nodeattestor -count 5 $$(command -v perf >/dev/null && echo -perf 32,64)
	cd bench/plots && $(GO) run . -in ../results.json -out ..

clean:
	rm -rf $(BIN)

# Release: scripts/release says what goes into dist/<version>/ and how the
# bytes stay reproducible (version and commit from git via -ldflags -X, no
# time stamps). The SBOM tool (cyclonedx-gomod) comes from the separate
# tools/sbom module. Offline once `go mod download` ran in both modules.
release:
	./scripts/release

# Two builds, compared byte for byte. CI runs the cheaper linux/amd64 form
# (.ci/run); RELEASE_ARCHES="amd64 arm64" RELEASE_SBOM=1 checks everything.
release-check:
	./scripts/release-check

# NOTICE's module table is generated: rebuild the release into .bin and
# take the regenerated NOTICE from it.
notices:
	RELEASE_DIR=$(BIN)/notices-release ./scripts/release
	cp $(BIN)/notices-release/NOTICE NOTICE
