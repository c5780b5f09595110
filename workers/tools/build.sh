#!/usr/bin/env bash
# Builds the Worker (workers/build/) with the local toolchain; wrangler.toml's [build] runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The tests build once, then start many `wrangler dev`s on that build.
if [ "${MCP_EDGE_WORKER_PREBUILT:-}" = 1 ] && [ -f "$here/../build/index.js" ]; then exit 0; fi
bash "$here/install.sh"
source "$here/env.sh"
cd "$here/.."
worker-build --release
