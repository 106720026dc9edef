#!/usr/bin/env bash
# Renders the HTML report pages (the bundled sample and a hostile one) in headless Chromium,
# checks them (tests/html.rs, ignored by default) and keeps the screenshots under
# target/html-test/. Installs Debian's chromium when it is missing (needs root and the
# Debian mirror). Not run by CI (time, and a browser).
#
#   scripts/browser-test.sh            # run the test
#   scripts/browser-test.sh --docs     # also copy the bundled page's screenshot to docs/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
DYNBATCH_CHROMIUM=$(command -v chromium) \
  cargo test --features html,mock,tokio --test suite html:: -- --ignored --nocapture
if [ "${1:-}" = "--docs" ]; then
  mkdir -p docs
  cp target/html-test/bundled.png docs/report.png
  echo "docs/report.png"
fi
