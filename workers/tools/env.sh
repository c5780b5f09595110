# Sourced by the build and by the tests: the local toolchain, and no network for wrangler
# beyond what a local run needs (no metrics, no request.cf lookup).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/target/workers-tools"
[ -x "$tools/node/bin/node" ] && export PATH="$tools/node/bin:$PATH"
export PATH="$tools/bin:$root/workers/node_modules/.bin:$PATH"
# worker-build would download these from GitHub otherwise.
export WASM_BINDGEN_BIN="$tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$root/workers/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$root/workers/node_modules/.bin/esbuild"
export WRANGLER_SEND_METRICS=false
export CLOUDFLARE_CF_FETCH_ENABLED=false
