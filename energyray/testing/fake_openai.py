"""A fake OpenAI-compatible server for tests: stdlib only, threaded, on 127.0.0.1, port 0.

Scriptable like httpx's MockTransport: each request takes the next `Reply` of the script
(then the default one), which says what to do -- answer with a status (429 with Retry-After,
500), hang past the client's timeout, stall or break the SSE stream midway, send an error
event, delay tokens, report usage or not. It serves POST /v1/chat/completions,
/v1/completions and /v1/responses (streamed or not) and GET /v1/models, in the shapes
OpenAI's API uses (chat and completions send usage only when asked with
`stream_options={"include_usage": true}`, in a last chunk with empty `choices`).

A prompt shaped like the LLM judge's (energyray.tasks.judge: `[question]:`, `[response]:` and
`[correct_answer]:` sections) gets a deterministic verdict when the reply has no scripted text:
`correct: yes` iff the response's final answer (its last "Answer:" line, else its last line)
equals the correct answer shown, both normalised (`judge_answer`).

It stands in for the far side we cannot reach in tests (OpenAI's servers); the real-server
tests run `transformers serve`.

    with FakeOpenAI([Reply(status=429, retry_after_s=0.1), Reply()]) as fake:
        ...  # base_url=fake.base_url; fake.requests lists what arrived

`python -m energyray.testing.fake_openai --port 8000` serves until interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "The answer is Paris, the capital of France."


@dataclass
class Reply:
    """What the fake does with one request."""

    status: int = 200
    retry_after_s: float | None = None  # sent as Retry-After (and retry-after-ms) on an error status
    text: str | Callable[[str], str] | None = None  # None: DEFAULT_TEXT (a judge prompt: the verdict); a callable gets the prompt
    first_token_delay_s: float = 0.0
    token_delay_s: float = 0.0
    usage: bool = True  # report usage (chat/completions: only where the request asks for it)
    reasoning_tokens: int = 0  # hidden tokens billed as output (reasoning models)
    hang_s: float = 0.0  # wait this long before answering at all
    stall_after_tokens: int | None = None  # after this many tokens, go silent for stall_s
    stall_s: float = 0.0
    malformed_after_tokens: int | None = None  # after this many tokens, a `data:` line that is not JSON
    error_after_tokens: int | None = None  # after this many tokens, an error event
    drop_after_tokens: int | None = None  # after this many tokens, close the connection
    echo_auth: bool = False  # put the request's Authorization header in the error message (a leaky server)
    detail: str | None = None  # an error status's body as FastAPI servers send it: {"detail": ...}


_ANSWER_LINE = re.compile(r"^\s*(?:final\s+)?answer\s*:\s*(.*\S)\s*$", re.I | re.M)


def _normalised(text: str) -> str:
    """Lower case; punctuation, articles and extra whitespace dropped (a decimal point kept)."""
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", text.lower().replace("*", " "))
    text = re.sub(r"[^\w\s.%/-]", " ", text)
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def final_answer(response: str) -> str | None:
    """The response's final answer as the fake judge reads it: its last "Answer:" line, else
    its last non-empty line; None when it is empty."""
    found = _ANSWER_LINE.findall(response)
    if found:
        return str(found[-1]).strip()
    lines = [x.strip() for x in response.splitlines() if x.strip()]
    return lines[-1] if lines else None


def judge_answer(prompt: str) -> str | None:
    """The fake judge's reply to a judge-shaped prompt, or None for any other prompt."""
    q, r, g = prompt.find("[question]:\n"), prompt.find("\n\n[response]:\n"), prompt.rfind("\n\n[correct_answer]:\n")
    if q < 0 or not q < r < g:
        return None
    response = prompt[r + len("\n\n[response]:\n"):g]
    gold = prompt[g + len("\n\n[correct_answer]:\n"):].split("\n\n", 1)[0].strip()
    extracted = final_answer(response)
    ok = extracted is not None and _normalised(extracted) == _normalised(gold) != ""
    return (f"extracted_final_answer: {extracted}\n"
            f"reasoning: (fake judge) the normalised final answer {'equals' if ok else 'differs from'} the "
            f"normalised correct answer.\ncorrect: {'yes' if ok else 'no'}")


def tokens_of(text: str) -> list[str]:
    """The fake's tokens: words with their leading whitespace."""
    return re.findall(r"\s*\S+", text)


class FakeOpenAI:
    """The server; a context manager. `requests` records each request (path, kind, body,
    headers with lower-case names, arrival time on the monotonic clock)."""

    def __init__(self, script: Iterable[Reply] = (), default: Reply | None = None,
                 api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self._script: Iterator[Reply] = iter(list(script))
        self.default = default or Reply()
        self.api_key = api_key  # when set, requests must carry `Authorization: Bearer <key>`
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most requests being answered at once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def next_reply(self, record: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(record)
            return next(self._script, self.default)

    def _enter(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeOpenAI/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def fake(self) -> FakeOpenAI:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "fake"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        self.fake._enter(1)
        try:
            self._post()
        finally:
            self.fake._enter(-1)

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        kind = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                "/v1/responses": "responses"}.get(self.path.rstrip("/"))
        reply = self.fake.next_reply({"path": self.path, "kind": kind, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "t": time.monotonic()})
        if kind is None:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        if self.fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            self._json(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                       "code": "invalid_api_key"}})
            return
        if reply.hang_s and self.fake._stop.wait(reply.hang_s):
            return
        if reply.status != 200:
            headers = {}
            if reply.retry_after_s is not None:
                headers = {"Retry-After": f"{reply.retry_after_s:g}",
                           "retry-after-ms": str(int(reply.retry_after_s * 1000))}
            kind_name = "rate_limit_exceeded" if reply.status == 429 else "server_error"
            message = f"fake {reply.status}"
            if reply.echo_auth:
                message += f" (you sent {self.headers.get('Authorization')})"
            body = {"detail": reply.detail} if reply.detail else {"error": {"message": message, "type": kind_name}}
            self._json(reply.status, body, headers)
            return
        try:
            self._answer(kind, body, reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to do

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, kind: str, body: dict[str, Any], reply: Reply) -> None:
        prompt = _prompt_text(kind, body)
        if callable(reply.text):
            text = reply.text(prompt)
        elif reply.text is not None:
            text = reply.text
        else:
            text = judge_answer(prompt) or DEFAULT_TEXT
        cap = body.get("max_output_tokens") or body.get("max_completion_tokens") or body.get("max_tokens")
        toks = tokens_of(text)
        finish = "stop"
        if cap is not None and len(toks) > int(cap):
            toks, finish = toks[: int(cap)], "length"
        usage = {"prompt": len(tokens_of(prompt)), "completion": len(toks) + reply.reasoning_tokens,
                 "reasoning": reply.reasoning_tokens}
        model = body.get("model", "fake-model")
        if not body.get("stream"):
            self._json(200, _whole(kind, model, "".join(toks), finish, usage if reply.usage else None))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        include_usage = reply.usage and (kind == "responses" or bool((body.get("stream_options") or {}).get("include_usage")))
        events = _stream(kind, model, toks, finish, usage if include_usage else None)
        sent = 0
        for is_token, event in events:
            if is_token:
                if reply.malformed_after_tokens is not None and sent == reply.malformed_after_tokens:
                    self._send('data: {"choices": [{"delta": {"content": "oops"\n\n')
                    return
                if reply.error_after_tokens is not None and sent == reply.error_after_tokens:
                    self._send(_event(kind, "error", {"error": {"message": "fake error mid-stream",
                                                                "type": "server_error"}}))
                    return
                if reply.drop_after_tokens is not None and sent == reply.drop_after_tokens:
                    return
                stall = reply.stall_after_tokens is not None and sent == reply.stall_after_tokens
                if stall and self.fake._stop.wait(reply.stall_s):
                    return
                delay = reply.first_token_delay_s if sent == 0 else reply.token_delay_s
                if delay and self.fake._stop.wait(delay):
                    return
                sent += 1
            self._send(event)

    def _send(self, text: str) -> None:
        self.wfile.write(text.encode())
        self.wfile.flush()


def _prompt_text(kind: str, body: dict[str, Any]) -> str:
    if kind == "chat":
        parts = []
        for m in body.get("messages") or []:
            c = m.get("content")
            parts.append(c if isinstance(c, str) else " ".join(p.get("text", "") for p in c or []))
        return "\n".join(parts)
    if kind == "responses":
        inp = body.get("input")
        if isinstance(inp, str):
            return inp
        return "\n".join(str(m.get("content", "")) for m in inp or [])
    return str(body.get("prompt", ""))


_ids = itertools.count(1)


def _usage(kind: str, u: dict[str, int]) -> dict[str, Any]:
    if kind == "responses":
        return {"input_tokens": u["prompt"], "output_tokens": u["completion"],
                "total_tokens": u["prompt"] + u["completion"],
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": u["reasoning"]}}
    return {"prompt_tokens": u["prompt"], "completion_tokens": u["completion"],
            "total_tokens": u["prompt"] + u["completion"],
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": u["reasoning"]}}


def _event(kind: str, name: str, data: dict[str, Any]) -> str:
    if kind == "responses":
        return f"event: {name}\ndata: {json.dumps(data)}\n\n"
    return f"data: {json.dumps(data)}\n\n"


def _stream(kind: str, model: str, toks: list[str], finish: str,
            usage: dict[str, int] | None) -> Iterator[tuple[bool, str]]:
    """(is_token, SSE text) in order."""
    rid, created = f"fake-{next(_ids)}", int(time.time())
    if kind == "responses":
        seq = itertools.count()
        resp = {"id": rid, "object": "response", "created_at": created, "model": model, "status": "in_progress",
                "output": [], "usage": None}
        yield False, _event(kind, "response.created", {"type": "response.created", "sequence_number": next(seq),
                                                       "response": resp})
        for t in toks:
            yield True, _event(kind, "response.output_text.delta", {
                "type": "response.output_text.delta", "sequence_number": next(seq), "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "delta": t, "logprobs": []})
        status = "completed" if finish == "stop" else "incomplete"
        done = {**resp, "status": status, "output": [_message("".join(toks))],
                "usage": None if usage is None else _usage(kind, usage)}
        if status == "incomplete":
            done["incomplete_details"] = {"reason": "max_output_tokens"}
        yield False, _event(kind, f"response.{status}", {"type": f"response.{status}",
                                                         "sequence_number": next(seq), "response": done})
        return
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        return _event(kind, "", {"id": rid, "object": obj, "created": created, "model": model,
                                 "choices": choices, **extra})

    if kind == "chat":
        yield False, chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for t in toks:
            yield True, chunk([{"index": 0, "delta": {"content": t}, "finish_reason": None}])
        yield False, chunk([{"index": 0, "delta": {}, "finish_reason": finish}])
    else:
        for t in toks:
            yield True, chunk([{"index": 0, "text": t, "finish_reason": None, "logprobs": None}])
        yield False, chunk([{"index": 0, "text": "", "finish_reason": finish, "logprobs": None}])
    if usage is not None:
        yield False, chunk([], usage=_usage(kind, usage))
    yield False, "data: [DONE]\n\n"


def _message(text: str) -> dict[str, Any]:
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def _whole(kind: str, model: str, text: str, finish: str, usage: dict[str, int] | None) -> dict[str, Any]:
    rid, created = f"fake-{next(_ids)}", int(time.time())
    u = None if usage is None else _usage(kind, usage)
    if kind == "responses":
        return {"id": rid, "object": "response", "created_at": created, "model": model,
                "status": "completed" if finish == "stop" else "incomplete", "output": [_message(text)], "usage": u}
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": [choice], "usage": u}
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}], "usage": u}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    p.add_argument("--api-key", default=None, help="require this bearer key")
    args, _ = p.parse_known_args(argv)  # a real server's flags (--dtype ...) are accepted and ignored
    fake = FakeOpenAI(default=Reply(token_delay_s=args.token_delay), api_key=args.api_key, port=args.port)
    print(f"fake OpenAI server at {fake.base_url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
