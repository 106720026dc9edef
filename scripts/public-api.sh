#!/usr/bin/env bash
# The crate's public surface, listed from rustdoc JSON (cargo-public-api, nightly rustdoc) in
# public-api.txt, so that every change to it shows in review.
#
#   scripts/public-api.sh           # regenerate and diff against public-api.txt (exit 1 if it changed)
#   scripts/public-api.sh --bless   # write the new list to public-api.txt
#
# Installs cargo-public-api (~4 min, once) and a nightly toolchain when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-public-api > /dev/null || cargo install cargo-public-api --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
mkdir -p target
cargo public-api --all-features -ss > target/public-api.txt
if [ "${1:-}" = "--bless" ]; then
  cp target/public-api.txt public-api.txt
  echo "public-api.txt: $(wc -l < public-api.txt) items"
  exit 0
fi
diff -u public-api.txt target/public-api.txt && echo "the public API is unchanged"
