"""A small OpenAI-compatible Completions server over the PyTorch reference.

A second, independent implementation of the serving API (no Node, no C++
engine): the load generator (bench/load) pointed at it by --base-url shows
that the tool works unchanged against any OpenAI-compatible server. It
serves one shipped checkpoint with a bytes tokenizer (token id = byte value,
special tokens >= 256) through `models.load(dir)` and each architecture's
`forward_with_past` (prefill, then one cached step per token).

    /usr/bin/python3 tools/reference/openai_server.py --model default --port 0 [--threads 1] [--max-concurrent 4]

Prints `listening on http://HOST:PORT` once the model is loaded. Routes:
GET /health, GET /v1/models, POST /v1/completions (prompt as a string, a
list of token ids, or a one-element list of either; max_tokens, temperature,
top_p, top_k, seed, stop, logit_bias, n = 1, stream with `data: ...` events
ending `data: [DONE]`, stream_options.include_usage). Errors:
{"error": {"message", "type", "param", "code"}}. Unknown fields are ignored
(as many OpenAI-compatible servers do). Requests run in their own threads;
at most --max-concurrent generate at once, the others wait their turn.
Not a production server: no batching, one sequence per forward.
"""
import argparse
import codecs
import json
import os
import random
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import torch  # noqa: E402

import checkpoint  # noqa: E402
import models  # noqa: E402


class ApiError(Exception):
    def __init__(self, status, message, param=None, code=None, type_=None):
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.type = type_ or {400: "invalid_request_error", 404: "not_found_error", 500: "server_error",
                              503: "unavailable_error"}.get(status, "invalid_request_error")

    def body(self):
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


def resolve_model(name):
    if os.path.exists(os.path.join(name, "config.json")):
        return os.path.abspath(name)
    if name == "default":
        with open(os.path.join(ROOT, "models", "DEFAULT"), encoding="utf-8") as f:
            name = f.read().strip()
    d = os.path.join(ROOT, "models", name)
    if os.path.exists(os.path.join(d, "config.json")):
        return d
    raise SystemExit(f"openai_server: --model {name}: neither a checkpoint folder nor a model under models/")


class Served:
    """The loaded model and what requests need to know about it."""

    def __init__(self, model_dir, max_concurrent):
        cfg = checkpoint.read_config(model_dir)
        if cfg.get("tokenizer_class") != "bytes":
            raise SystemExit(f"openai_server: {model_dir}: only bytes-tokenizer checkpoints are served "
                             f"(tokenizer_class {cfg.get('tokenizer_class')!r})")
        self.model = models.load(model_dir)
        self.model.eval()
        self.id = os.path.basename(os.path.normpath(model_dir))
        self.vocab = int(cfg["vocab_size"])
        self.n_positions = cfg.get("n_positions")
        eos = cfg.get("eos_token_id", (cfg.get("special_tokens") or {}).get("eos"))
        self.eos = int(eos) if isinstance(eos, int) else None
        self.slots = threading.Semaphore(max_concurrent)


# ------------------------------------------------------------------ request parsing

def _number(body, key, default, lo, hi):
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise ApiError(400, f"{key} must be a number in [{lo}, {hi}] (got {json.dumps(v)})", key, "invalid_parameter")
    return v


def _integer(body, key, default, lo, hi):
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not (lo <= v <= hi):
        raise ApiError(400, f"{key} must be an integer in [{lo}, {hi}] (got {json.dumps(v)})", key, "invalid_parameter")
    return v


def parse_request(body, served):
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", None, "invalid_parameter")
    model = body.get("model")
    if model is not None and model != served.id:
        raise ApiError(404, f"The model {json.dumps(model)} does not exist: this server serves {json.dumps(served.id)}",
                       "model", "model_not_found")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = list(prompt.encode("utf-8"))
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        bad = [t for t in ids if not 0 <= t < served.vocab]
        if bad:
            raise ApiError(400, f"token id {bad[0]} is out of range [0, {served.vocab})", "prompt", "invalid_parameter")
    else:
        raise ApiError(400, "prompt must be a string, a list of token ids, or a one-element list of either", "prompt",
                       "invalid_parameter")
    if not ids:
        raise ApiError(400, "prompt must not be empty", "prompt", "invalid_parameter")
    r = {
        "ids": ids,
        "max_tokens": _integer(body, "max_tokens", 16, 0, 1 << 24),
        "temperature": _number(body, "temperature", 1.0, 0, 2),
        "top_p": _number(body, "top_p", 1.0, 0, 1),
        "top_k": _integer(body, "top_k", 0, -1, 1 << 30),
        "seed": _integer(body, "seed", None, -(1 << 63), (1 << 63) - 1),
        "stream": bool(body.get("stream") or False),
    }
    if r["top_p"] <= 0:
        raise ApiError(400, "top_p must be in (0, 1]", "top_p", "invalid_parameter")
    if _integer(body, "n", 1, 1, 1) != 1 or _integer(body, "best_of", 1, 1, 1) != 1:
        raise ApiError(400, "only n = 1 (and best_of = 1) is served", "n", "unsupported_parameter")
    if body.get("echo"):
        raise ApiError(400, "echo is not supported", "echo", "unsupported_parameter")
    if body.get("logprobs") is not None:
        raise ApiError(400, "logprobs is not supported", "logprobs", "unsupported_parameter")
    if body.get("suffix") is not None:
        raise ApiError(400, "suffix is not supported", "suffix", "unsupported_parameter")
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > 16:
        raise ApiError(400, "stop must be a string or up to 16 non-empty strings", "stop", "invalid_parameter")
    r["stop"] = stop
    bias = body.get("logit_bias") or {}
    if not isinstance(bias, dict):
        raise ApiError(400, "logit_bias must be an object of token id -> bias", "logit_bias", "invalid_parameter")
    r["logit_bias"] = []
    for k, v in bias.items():
        try:
            t = int(k)
        except ValueError:
            raise ApiError(400, f"logit_bias key {k!r} is not a token id", f"logit_bias[{k}]", "invalid_parameter")
        if not 0 <= t < served.vocab or isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100:
            raise ApiError(400, f"logit_bias[{k}] must map a token id in [0, {served.vocab}) to [-100, 100]",
                           f"logit_bias[{k}]", "invalid_parameter")
        r["logit_bias"].append((t, float(v)))
    so = body.get("stream_options")
    if so is not None and not r["stream"]:
        raise ApiError(400, "stream_options is only allowed with stream: true", "stream_options", "invalid_parameter")
    r["include_usage"] = bool(isinstance(so, dict) and so.get("include_usage"))
    if served.n_positions is not None and len(ids) + r["max_tokens"] > served.n_positions:
        raise ApiError(400, f"This model's maximum context length is {served.n_positions} tokens; the prompt has "
                       f"{len(ids)} and max_tokens is {r['max_tokens']}", "max_tokens", "context_length_exceeded")
    return r


# ------------------------------------------------------------------ generation

class Cancelled(Exception):
    pass


@torch.no_grad()
def generate(served, r, emit):
    """Samples up to max_tokens; emit(text) with each piece of releasable text.
    Returns (finish_reason, completion_tokens)."""
    model = served.model
    gen = torch.Generator()
    gen.manual_seed(r["seed"] if r["seed"] is not None else random.getrandbits(63))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stop = r["stop"]
    hold = max((len(s) for s in stop), default=1) - 1  # characters that could still start a stop string
    pending = ""  # decoded text not yet released
    n_out = 0
    if r["max_tokens"] == 0:
        return "length", 0
    logits, past = model.forward_with_past(r["ids"], None)
    finish = "length"
    while True:
        last = logits[-1].to(torch.float64).clone()
        for t, b in r["logit_bias"]:
            last[t] += b
        if r["temperature"] == 0:
            nxt = int(torch.argmax(last))
        else:
            last = last / r["temperature"]
            if r["top_k"] > 0:
                kth = torch.topk(last, min(r["top_k"], last.shape[0])).values[-1]
                last[last < kth] = float("-inf")
            p = torch.softmax(last, dim=-1)
            if r["top_p"] < 1:
                sp, si = torch.sort(p, descending=True)
                keep = torch.cumsum(sp, 0) - sp < r["top_p"]
                q = torch.zeros_like(p)
                q[si[keep]] = sp[keep]
                p = q / q.sum()
            nxt = int(torch.multinomial(p, 1, generator=gen))
        n_out += 1
        if served.eos is not None and nxt == served.eos:
            finish = "stop"
            break
        if nxt < 256:
            pending += decoder.decode(bytes([nxt]))
        cut = min((pending.find(s) for s in stop if s in pending), default=-1)
        if cut >= 0:
            if cut > 0:
                emit(pending[:cut])
            return "stop", n_out
        if len(pending) > hold:
            emit(pending[:len(pending) - hold])
            pending = pending[len(pending) - hold:]
        if n_out >= r["max_tokens"]:
            break
        if served.n_positions is not None and len(r["ids"]) + n_out >= served.n_positions:
            break
        logits, past = model.forward_with_past([nxt], past)
    pending += decoder.decode(b"", final=True)
    if pending:
        emit(pending)
    return finish, n_out


# ------------------------------------------------------------------ HTTP

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "roost-reference-openai/0.1"
    served = None  # set by main
    quiet = True

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def _json(self, status, obj, extra_headers=None):
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, text):
        data = text.encode("utf-8")
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            raise Cancelled()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/health":
            return self._json(200, {"status": "ok"})
        if path == "/v1/models":
            return self._json(200, {"object": "list", "data": [{"id": self.served.id, "object": "model", "created": 0,
                                                                 "owned_by": "roost-reference",
                                                                 "max_model_len": self.served.n_positions}]})
        if path == "/v1/models/" + self.served.id:
            return self._json(200, {"id": self.served.id, "object": "model", "created": 0, "owned_by": "roost-reference",
                                    "max_model_len": self.served.n_positions})
        return self._json(404, ApiError(404, f"no route GET {path}", None, "not_found").body())

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if path != "/v1/completions":
            return self._json(404, ApiError(404, f"no route POST {path}", None, "not_found").body())
        try:
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ApiError(400, f"the body is not valid JSON: {e}", None, "invalid_json")
            r = parse_request(body, self.served)
        except ApiError as e:
            return self._json(e.status, e.body())
        head = {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
                "model": self.served.id}
        usage_field = {"usage": None} if r["include_usage"] else {}
        if not r["stream"]:
            parts = []
            with self.served.slots:
                try:
                    finish, n = generate(self.served, r, parts.append)
                except Exception as e:  # noqa: BLE001
                    return self._json(500, ApiError(500, f"generation failed: {e}", None, "server_error").body())
            return self._json(200, {**head, "choices": [{"index": 0, "text": "".join(parts), "logprobs": None,
                                                         "finish_reason": finish}],
                                    "usage": {"prompt_tokens": len(r["ids"]), "completion_tokens": n,
                                              "total_tokens": len(r["ids"]) + n}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(obj):
            self._chunk("data: " + json.dumps(obj) + "\n\n")

        def emit(text):
            event({**head, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}], **usage_field})

        try:
            with self.served.slots:
                try:
                    finish, n = generate(self.served, r, emit)
                    event({**head, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": finish}],
                           **usage_field})
                    if r["include_usage"]:
                        event({**head, "choices": [], "usage": {"prompt_tokens": len(r["ids"]), "completion_tokens": n,
                                                                "total_tokens": len(r["ids"]) + n}})
                except Cancelled:
                    raise
                except Exception as e:  # noqa: BLE001  (headers are gone: report in-band)
                    event(ApiError(500, f"generation failed: {e}", None, "server_error").body())
            self._chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (Cancelled, BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="checkpoint folder or a name under models/ (default: models/DEFAULT)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (intra-op)")
    ap.add_argument("--max-concurrent", type=int, default=4, help="requests generating at once; the rest wait")
    ap.add_argument("--log-requests", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    served = Served(resolve_model(a.model), max(1, a.max_concurrent))
    Handler.served = served
    Handler.quiet = not a.log_requests
    httpd = ThreadingHTTPServer((a.host, a.port), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on http://{shown}:{port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
