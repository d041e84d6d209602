"""OpenAI-compatible HTTP APIs: the only module that imports `openai` (lazily).

backend=openai sends a batch of prompts as concurrent streamed requests (at most
`api.concurrency` in flight) to OpenAI, or to any compatible server through `api.base_url`
(vLLM serve, Ollama's /v1, transformers serve), on one of three endpoints: `chat` (Chat
Completions), `responses` (the Responses API: GPT-5 Pro has no other) or `completions`
(legacy Completions: the raw prompt, no chat template -- what the transformers backend feeds
its model, and what models without a chat template need).

Chat templates: on the chat and responses endpoints the server applies its own template
(`chat_template` on or auto; off is refused there); the completions endpoint sends the raw
text (off or auto; on is refused). prompt_tokens is refused: the server's tokenizer is
unknown here, so no prompt can be made exactly N tokens long.

What is measured, per request, on this process's time.monotonic_ns clock:
- TTFT at the first non-empty text delta (answer or reasoning text), from the start of the
  request's last attempt (`ttft_request_s_*`). The Generation's `step_ns` are arrival times
  of text deltas: step k is when the slowest stream that has a k-th delta delivered it, so
  the row's `ttft_s` is the batch's (every request has its first delta, counted from the
  batch's start: retry waits included) and `tpot_s` the mean time per delta after it. A delta is usually one token but need not be, and arrival
  times include the network and the server's buffering: these are client-side figures.
- Token counts from the server's usage report only: the last chunk when asked with
  `stream_options={"include_usage": True}`, or the Responses API's `response.completed`.
  A server that sends none (or for only some requests) gives null counts with
  `tokens_reason`; nothing is counted on the client. `transformers serve` ignores
  stream_options but always reports usage on its last chunk (checked with 5.23).
- Cost from the dated price table (energyray.prices): `cost_usd`, `cost_input_usd`,
  `cost_output_usd`, `price_table_date`.
- Retries on 429, 5xx, timeouts and connection errors: exponential backoff with full
  jitter (`api.backoff_s` x 2^attempt, at most `api.backoff_max_s`), or the server's
  Retry-After where it sends one (capped at backoff_max_s); `api_retries` per trial. A
  request that still fails fails the trial (a row with the error; the sweep goes on).
  A stream that ends without a finish reason (a dropped connection) is retried too; client
  errors (4xx but 429), error events and malformed streams are not.

Energy: the model runs on someone else's machines; this machine's sampler measures none of
it. `measures_local_energy = False` makes the runner record energy_j = null with source
`not_measurable` and the reason. With `api.energy_estimate=flops` the row also gets
`energy_estimated_j` (source `estimated`, never in energy_j, never 0) and
`energy_estimate_method`, after Epoch AI's "How much energy does ChatGPT use?" (2025):

    J = 2 x active parameters x output tokens / (GPU peak FLOP/s x utilization) x W per GPU

with their assumptions as defaults: H100 peak 9.89e14 dense bf16 FLOP/s, 10 % utilization,
1071 W per GPU (a DGX H100's 10.2 kW / 8 GPUs = 1275 W, x 0.7 average draw, x 1.2 PUE).
Active parameters are not published for closed models: each model's catalogue entry gives
an assumed `estimate_active_params_b` and says where it comes from. Output tokens include
reasoning tokens (billed and computed as output); input tokens (prefill) are left out, as in
Epoch's method for short inputs, and so is any parallel sampling a "pro" model may do: a
floor-ish order of magnitude, not a measurement.

`api.energy_estimate=ecologits` gives instead EcoLogits' range (energyray.footprint.ecologits_estimate:
its model repository's parameter counts, each request's output tokens and latency, the
provider's datacenter PUE and electricity mix) in `energy_estimated_ecologits_min_j`/`_max_j`
and `ecologits_min_co2_g`/`_max_co2_g`; `both` gives both estimates side by side.

The API key is read from the environment variable named by `api.api_key_env`, in the worker,
when the client is built; it goes into the client's Authorization header and nowhere else
(no row, config, log or error message: errors are scrubbed of it). With `api.base_url`
unset (OpenAI itself) a missing key is a ConfigError before the sweep starts; a
compatible server gets the key if the variable is set, else a placeholder.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

from energyray.backends import PRECISIONS as _ALL_PRECISIONS
from energyray.backends.base import (
    Generation,
    LoadInfo,
    Prompts,
    check_chat_template,
    no_prompt_tokens,
)
from energyray.errors import BackendError, ConfigError, TrialFailed

ENDPOINTS = ("chat", "responses", "completions")
ESTIMATES = ("none", "flops", "ecologits", "both")
OPENAI_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "unused"  # what a keyless local server gets (the SDK refuses an empty key)
NOT_LOCAL_REASON = ("the model runs on a remote API server; this machine's sampler does not measure "
                    "it and the provider reports no energy")


def _api_default() -> Any:
    from energyray.config import ApiConfig

    return ApiConfig()


def endpoint_for(model: Any, api: Any) -> str:
    endpoint = api.endpoint or getattr(model, "api_endpoint", None) or "chat"
    if endpoint not in ENDPOINTS:
        raise ConfigError(f"API endpoint {endpoint!r} (model {model.name!r}) is not one of: {', '.join(ENDPOINTS)}.")
    return endpoint


def api_model_of(model: Any) -> str | None:
    return getattr(model, "api_model", None) or getattr(model, "hub_id", None)


def read_key(api: Any, required: bool) -> str:
    """The key from the environment variable `api.api_key_env`; ConfigError naming it when required."""
    key = os.environ.get(api.api_key_env, "")
    if key:
        return key
    if required:
        raise ConfigError(
            f"backend=openai against OpenAI needs an API key in the environment variable "
            f"{api.api_key_env}: `export {api.api_key_env}=...` before running (api.api_key_env names "
            "another variable). Keys are read from the environment only, never from a config.")
    return PLACEHOLDER_KEY


def check_model(model: Any, weights: str, api: Any) -> str:
    """What a model must have for backend=openai (the driver's preflight and the worker's load
    both ask): weights=real, an `api_model`, an endpoint it takes, a known energy estimate.
    Returns the endpoint."""
    if weights != "real":
        raise ConfigError(f"backend=openai runs the server's own model: weights={weights} has no meaning "
                          f"there (model {model.name!r}). Use weights=real.")
    if not api_model_of(model):
        raise ConfigError(f"Model {model.name!r} has no `api_model` (the provider's model id) for backend=openai. "
                          f"Add it to conf/model/{model.name}.yaml.")
    endpoint = endpoint_for(model, api)
    if api.energy_estimate not in ESTIMATES:
        raise ConfigError(f"api.energy_estimate={api.energy_estimate!r}: valid choices are {', '.join(ESTIMATES)}.")
    return endpoint


def preflight(specs: list[Any], models: dict[str, Any], api: Any, running: bool) -> None:
    """What can be known wrong about API trials before the sweep starts (the driver calls it).
    The key is checked only when `running` (a dry run needs none)."""
    from energyray import prices

    need_key = False
    # every check below depends on these three only: once each (a price lookup parses its table)
    for s in {(s.backend, s.weights, s.model): s for s in specs}.values():
        m = models[s.model]
        if s.backend != "openai":
            if getattr(m, "provider", None):
                raise ConfigError(f"Model {s.model!r} is hosted by {m.provider}: only backend=openai can run it, "
                                  f"not backend={s.backend}. Exclude that combination in the sweep.")
            continue
        check_model(m, s.weights, api)
        if m.provider and prices.lookup(m.provider, str(m.api_model or ""), api.price_table) is None:
            path = prices.table_path(m.provider, api.price_table)
            raise ConfigError(f"No price for {m.api_model!r} (model {s.model!r}) in {path}: add it (USD per 1M "
                              "input and output tokens, with as_of), or the cost of these trials is unknown.")
        need_key = need_key or api.base_url is None
    if running and need_key:
        read_key(api, required=True)


def api_prompts(texts: list[str], *, endpoint: str, backend: str, setting: str, prompt_tokens: int | None,
                chat_template: str) -> Prompts:
    """The texts as an OpenAI-compatible endpoint takes them: the chat and responses endpoints
    template them on the server, completions sends them raw. `setting` names the option
    that picks the endpoint (api.endpoint, server.endpoint) for the error messages."""
    check_chat_template(chat_template)
    no_prompt_tokens(prompt_tokens, backend)
    n = len(texts)
    if endpoint == "completions":
        if chat_template == "on":
            raise TrialFailed(f"chat_template=on: the completions endpoint sends raw text. Use {setting}=chat for "
                              "the server to apply the model's chat template, or chat_template=auto or off.")
        reason = ("chat_template=off" if chat_template == "off" else
                  f"the completions endpoint sends the raw text ({setting}=chat has the server apply its template)")
        return Prompts(inputs=list(texts), texts=list(texts), input_tokens=[None] * n, chat_template="none",
                       chat_template_reason=reason)
    if chat_template == "off":
        raise TrialFailed(f"chat_template=off: the {endpoint} endpoint always applies the server's chat template. "
                          f"Use {setting}=completions for raw text, or chat_template=auto or on.")
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/responses"
    return Prompts(inputs=list(texts), texts=list(texts), input_tokens=[None] * n, chat_template="applied",
                   chat_template_source=f"the server's own chat template ({path}): texts are sent as a user message")


class IncompleteStream(Exception):
    """The stream ended without a finish reason: the connection dropped mid-answer (retried)."""


@dataclass
class _Request:
    """One prompt's request and what came back, on the monotonic clock (ns)."""

    prompt: str
    text: str = ""
    submitted_ns: int = 0  # first attempt
    attempt_ns: int = 0  # last attempt
    end_ns: int = 0
    delta_ns: list[int] = field(default_factory=list)
    usage: dict[str, int | None] | None = None  # input, output, cached, reasoning
    finish_reason: str | None = None
    retries: int = 0
    retry_wait_s: float = 0.0
    error: str | None = None
    transient: bool = False  # the error was worth retrying (429, 5xx, a timeout): a later run may pass


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms:
            return max(0.0, float(ms) / 1000)
        ra = headers.get("retry-after")
        if not ra:
            return None
        try:
            return max(0.0, float(ra))
        except ValueError:
            return max(0.0, parsedate_to_datetime(ra).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _error_text(e: Exception) -> str:
    """`e` in one line; for an HTTP status error, with the server's own reason from the body,
    which the SDK's message leaves out for some servers ("Error code: 400")."""
    text = f"{type(e).__name__}: {e}"
    body = getattr(e, "body", None)
    if isinstance(body, dict):  # {"detail": ...} (FastAPI) or {"error": {"message": ...}} (OpenAI)
        inner = body.get("error")
        body = body.get("detail") or body.get("message") or (inner.get("message") if isinstance(inner, dict) else inner)
    reason = str(body).strip() if body else ""
    return f"{text}: {reason[:500]}" if reason and reason not in text else text


def _transport_error(e: Exception) -> bool:
    """A timeout or broken connection raised by the HTTP library itself: older SDKs (openai
    1.x) let these through unwrapped when they happen mid-stream."""
    module, name = type(e).__module__.split(".")[0], type(e).__name__
    return module in ("httpx", "httpx2", "httpcore", "httpcore2") and any(
        part in name for part in ("Timeout", "Connect", "Read", "Protocol", "Network"))


def _field(obj: Any, *names: str) -> Any:
    """obj.a.b... where each step may be missing (usage details vary by server)."""
    for n in names:
        if obj is None:
            return None
        obj = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
    return obj


def _usage(u: Any, responses: bool) -> dict[str, int | None] | None:
    if u is None:
        return None
    if responses:
        inp, out = _field(u, "input_tokens"), _field(u, "output_tokens")
        cached, reasoning = (_field(u, "input_tokens_details", "cached_tokens"),
                             _field(u, "output_tokens_details", "reasoning_tokens"))
    else:
        inp, out = _field(u, "prompt_tokens"), _field(u, "completion_tokens")
        cached, reasoning = (_field(u, "prompt_tokens_details", "cached_tokens"),
                             _field(u, "completion_tokens_details", "reasoning_tokens"))
    if inp is None or out is None:
        return None
    return {"input": int(inp), "output": int(out), "cached": None if cached is None else int(cached),
            "reasoning": None if reasoning is None else int(reasoning)}


def lockstep_steps(deltas: list[list[int]]) -> list[int]:
    """Step k = when the slowest stream with a k-th delta delivered it (kept non-decreasing)."""
    steps: list[int] = []
    for k in range(max((len(d) for d in deltas), default=0)):
        t = max(d[k] for d in deltas if len(d) > k)
        steps.append(max(t, steps[-1]) if steps else t)
    return steps


class OpenAIBackend:
    """A batch = concurrent streamed requests to an OpenAI-compatible API (see the module doc)."""

    name = "openai"
    precisions = _ALL_PRECISIONS["openai"]
    measures_local_energy = False
    energy_reason = NOT_LOCAL_REASON
    settings = ("api",)

    def __init__(self, api: Any = None, send_key: bool = True) -> None:
        self.api = api if api is not None else _api_default()
        self.send_key = send_key  # False: a server we launched ourselves never sees the user's key
        self.warmup_runs = int(self.api.warmup_runs)
        self.client: Any = None
        self.model: Any = None
        self.api_model = ""
        self.endpoint = "chat"
        self.base_url = ""
        self.price: Any = None
        self._key = ""  # only for scrubbing error messages

    # -- loading ---------------------------------------------------------------------------
    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        pass

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        import openai

        from energyray import prices

        self.endpoint = check_model(model, weights, self.api)
        self.model = model
        self.api_model = api_model_of(model) or ""
        self.base_url = (self.api.base_url or OPENAI_BASE_URL).rstrip("/")
        self._key = read_key(self.api, required=self.api.base_url is None) if self.send_key else PLACEHOLDER_KEY
        self.price = prices.lookup(model.provider, self.api_model, self.api.price_table) if getattr(model, "provider", None) else None
        timeout = openai.Timeout(self.api.timeout_s, connect=self.api.connect_timeout_s)
        self.client = openai.OpenAI(api_key=self._key, base_url=self.base_url, timeout=timeout, max_retries=0)
        self._prime()
        if self.api.energy_estimate in ("ecologits", "both"):
            from energyray.footprint import ecologits_estimate

            ecologits_estimate.prime()
        return LoadInfo(precision="api", device="remote", params_b=getattr(model, "params_b", None), details={
            "base_url": self.base_url, "api_model": self.api_model, "endpoint": self.endpoint,
            "concurrency": self.api.concurrency, "timeout_s": self.api.timeout_s, "max_retries": self.api.max_retries,
            "openai": openai.__version__, "price_table_date": getattr(self.price, "as_of", None),
            "price_table": getattr(self.price, "table", None),
        })

    def _prime(self) -> None:
        """Run the SDK's lazy imports and pydantic schema building now, not inside the first
        trial's TTFT (0.05-0.5 s seen with openai 3.54 on a process's first stream)."""
        try:
            from openai._models import construct_type  # private: skipped where it moved
            from openai.types import Completion
            from openai.types.chat import ChatCompletionChunk
            from openai.types.responses import ResponseStreamEvent

            if self.endpoint == "responses":
                _ = self.client.responses
                resp = {"id": "x", "object": "response", "created_at": 0, "model": "x", "status": "completed",
                        "output": [{"type": "message", "id": "m", "role": "assistant", "status": "completed",
                                    "content": [{"type": "output_text", "text": "", "annotations": []}]}],
                        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
                                  "input_tokens_details": {"cached_tokens": 0},
                                  "output_tokens_details": {"reasoning_tokens": 0}}}
                samples: list[tuple[Any, dict[str, Any]]] = [
                    (ResponseStreamEvent, {"type": t, "sequence_number": 0, "response": resp})
                    for t in ("response.created", "response.completed", "response.incomplete")]
                samples.append((ResponseStreamEvent, {"type": "response.output_text.delta", "delta": "",
                                                      "item_id": "m", "output_index": 0, "content_index": 0,
                                                      "sequence_number": 0, "logprobs": []}))
            else:
                _ = self.client.chat.completions if self.endpoint == "chat" else self.client.completions
                usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
                         "prompt_tokens_details": {"cached_tokens": 0},
                         "completion_tokens_details": {"reasoning_tokens": 0}}
                choice = ({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                          if self.endpoint == "chat" else {"index": 0, "text": "", "finish_reason": None})
                cls = ChatCompletionChunk if self.endpoint == "chat" else Completion
                base = {"id": "x", "created": 0, "model": "x", "object": "chat.completion.chunk"
                        if self.endpoint == "chat" else "text_completion"}
                samples = [(cls, {**base, "choices": [choice]}), (cls, {**base, "choices": [], "usage": usage})]
            for type_, value in samples:
                construct_type(type_=type_, value=value)
        except Exception:
            pass
        # The request side too (parameter transforms, the transport): one request to a closed
        # loopback port, refused at once; nothing leaves this machine.
        with contextlib.suppress(Exception):
            nowhere = self.client.with_options(base_url="http://127.0.0.1:1/v1", timeout=1.0, max_retries=0)
            r = _Request("prime")
            real, self.client = self.client, nowhere
            try:
                self._stream(r, 1)
            finally:
                self.client = real

    def unload(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    # -- generation ------------------------------------------------------------------------
    def prompts(self, texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                seed: int = 0) -> Prompts:
        """Texts as sent (see `api_prompts`); the endpoint is the one load() resolved."""
        return api_prompts(texts, endpoint=self.endpoint, backend=self.name, setting="api.endpoint",
                           prompt_tokens=prompt_tokens, chat_template=chat_template)

    def concurrent_feed(self, batch_size: int) -> str | None:
        """A trial's requests all go to one generate call, batch_size of them in flight at once."""
        return None

    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool,
                 concurrency: int | None = None) -> Generation:
        """ignore_eos is not sent: the API has no standard parameter for it (vLLM takes
        `ignore_eos` through api.extra_body). `concurrency`: requests in flight (None: api.concurrency)."""
        if self.client is None:
            raise BackendError("generate() before load()")
        reqs = [_Request(p) for p in prompts]
        workers = max(1, min(int(concurrency or self.api.concurrency), len(reqs)))
        start = time.monotonic_ns()
        with ThreadPoolExecutor(workers, thread_name_prefix="energyray-api") as pool:
            list(pool.map(lambda r: self._run(r, max_new_tokens), reqs))
        end = max((r.end_ns for r in reqs), default=start)
        extras = self._extras(reqs, workers, max_new_tokens)
        failed = [r for r in reqs if r.error]
        if failed:
            raise TrialFailed(f"{len(failed)} of {len(reqs)} API requests failed ({extras['api_retries']} retries in "
                              f"all; cost of the rest: {extras.get('cost_usd')} USD). First: {failed[0].error}",
                              retryable=all(r.transient for r in failed))
        usages = [r.usage for r in reqs]
        complete = all(u is not None for u in usages)
        timed = all(r.delta_ns for r in reqs)  # every request streamed text: its first and last delta
        return Generation(
            input_tokens=sum(u["input"] for u in usages if u) if complete else None,  # type: ignore[misc]
            output_tokens=sum(u["output"] for u in usages if u) if complete else None,  # type: ignore[misc]
            start_ns=start, end_ns=end, lengths=[len(r.delta_ns) for r in reqs],
            step_ns=lockstep_steps([r.delta_ns for r in reqs]), peak_memory_mb=None,
            new_ids=[r.text for r in reqs], extras=extras,
            seq_first_ns=[r.delta_ns[0] for r in reqs] if timed else [],
            seq_last_ns=[r.delta_ns[-1] for r in reqs] if timed else [],
            seq_input_tokens=[int(u["input"] or 0) for u in usages if u] if complete else [],
            seq_output_tokens=[int(u["output"] or 0) for u in usages if u] if complete else [],
            seq_start_ns=[r.submitted_ns for r in reqs],
            seq_finish_reasons=[r.finish_reason for r in reqs],
        )

    def decode(self, gen: Generation) -> list[str | None]:
        return list(gen.new_ids) if gen.new_ids is not None else [None] * len(gen.lengths)

    def _run(self, r: _Request, max_new_tokens: int) -> None:
        """One request, retried per the module doc; its outcome lands in `r`."""
        r.submitted_ns = time.monotonic_ns()
        attempt = 0
        while True:
            r.text, r.delta_ns, r.usage, r.finish_reason = "", [], None, None
            r.attempt_ns = time.monotonic_ns()
            try:
                self._stream(r, max_new_tokens)
                r.end_ns = time.monotonic_ns()
                if r.finish_reason is None:
                    raise IncompleteStream(f"the stream ended after {len(r.delta_ns)} text deltas without a "
                                           "finish reason (connection dropped?)")
                return
            except Exception as e:
                r.end_ns = time.monotonic_ns()
                wait = self._retry_wait(e, attempt)
                if wait is None or attempt >= self.api.max_retries:
                    tried = f" (after {attempt} retries)" if attempt else ""
                    r.error = self._scrub(f"{_error_text(e)}{tried}")
                    r.transient = wait is not None  # retries ran out on an error worth retrying
                    return
                attempt += 1
                r.retries, r.retry_wait_s = attempt, r.retry_wait_s + wait
                time.sleep(wait)

    def _retry_wait(self, e: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying `e`, or None when it is not worth retrying."""
        import openai

        retry_after = None
        if isinstance(e, openai.APIStatusError):
            if e.status_code != 429 and e.status_code < 500:
                return None
            retry_after = _retry_after_s(getattr(e.response, "headers", None))
        elif not isinstance(e, (openai.APIConnectionError, IncompleteStream)) and not _transport_error(e):
            return None  # (APITimeoutError is an APIConnectionError)
        cap = float(self.api.backoff_max_s)
        if retry_after is not None:
            return min(retry_after, cap)
        return random.uniform(0.0, min(cap, float(self.api.backoff_s) * 2 ** attempt))

    def _params(self, max_new_tokens: int) -> dict[str, Any]:
        """The request's generation fields; the model's api_params win, and a null drops a field."""
        cap = getattr(self.model, "api_max_output_tokens", None) or max_new_tokens
        name = {"chat": self.api.max_tokens_param, "completions": "max_tokens",
                "responses": "max_output_tokens"}[self.endpoint]
        p: dict[str, Any] = {name: int(cap), "temperature": self.api.temperature}
        if self.endpoint == "responses":
            p["store"] = False  # OpenAI keeps responses 30 days by default: not for a benchmark's prompts
        p.update(self.api.extra_body or {})
        p.update(getattr(self.model, "api_params", None) or {})
        return {k: v for k, v in p.items() if v is not None}

    def _stream(self, r: _Request, max_new_tokens: int) -> None:
        body = self._params(max_new_tokens)
        c = self.client
        if self.endpoint == "responses":
            stream = c.responses.create(model=self.api_model, input=r.prompt, stream=True, extra_body=body)
            with stream:
                for ev in stream:
                    now, kind = time.monotonic_ns(), getattr(ev, "type", "")
                    if kind == "response.output_text.delta":
                        piece = getattr(ev, "delta", "") or ""
                        if piece:
                            r.delta_ns.append(now)
                            r.text += piece
                    elif kind.startswith("response.reasoning") and kind.endswith(".delta"):
                        if getattr(ev, "delta", ""):
                            r.delta_ns.append(now)
                    elif kind in ("response.completed", "response.incomplete"):
                        resp = getattr(ev, "response", None)
                        r.usage = _usage(_field(resp, "usage"), responses=True)
                        r.finish_reason = _field(resp, "incomplete_details", "reason") or _field(resp, "status")
                    elif kind == "response.failed":
                        resp = getattr(ev, "response", None)
                        raise BackendError(f"response failed: {_field(resp, 'error', 'message') or _field(resp, 'error')}")
            return
        if self.endpoint == "chat":
            stream = c.chat.completions.create(model=self.api_model, messages=[{"role": "user", "content": r.prompt}],
                                               stream=True, stream_options={"include_usage": True}, extra_body=body)
        else:
            stream = c.completions.create(model=self.api_model, prompt=r.prompt, stream=True,
                                          stream_options={"include_usage": True}, extra_body=body)
        with stream:
            for chunk in stream:
                now = time.monotonic_ns()
                u = _usage(getattr(chunk, "usage", None), responses=False)
                if u is not None:
                    r.usage = u
                for ch in getattr(chunk, "choices", None) or []:
                    if self.endpoint == "chat":
                        delta = getattr(ch, "delta", None)
                        piece = _field(delta, "content") or ""
                        thinking = _field(delta, "reasoning_content") or _field(delta, "reasoning") or ""
                    else:
                        piece, thinking = getattr(ch, "text", "") or "", ""
                    if piece or thinking:
                        r.delta_ns.append(now)
                        r.text += piece
                    if getattr(ch, "finish_reason", None):
                        r.finish_reason = ch.finish_reason

    def _scrub(self, text: str) -> str:
        if self._key and self._key != PLACEHOLDER_KEY:
            text = text.replace(self._key, "***")
        return re.sub(r"\b(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}", r"\1***", text)

    # -- row fields ------------------------------------------------------------------------
    def _extras(self, reqs: list[_Request], workers: int, max_new_tokens: int) -> dict[str, Any]:
        from energyray import prices

        ok = [r for r in reqs if not r.error]
        ttfts = [(r.delta_ns[0] - r.attempt_ns) / 1e9 for r in ok if r.delta_ns]
        lat = [(r.end_ns - r.attempt_ns) / 1e9 for r in ok]
        usages = [r.usage for r in ok]
        missing = sum(u is None for u in usages)
        complete = ok and not missing
        tot = {k: (sum((u or {}).get(k) or 0 for u in usages) if complete else None)
               for k in ("input", "output", "cached", "reasoning")}
        out: dict[str, Any] = {
            "api_base_url": self.base_url, "api_model": self.api_model, "api_endpoint": self.endpoint,
            "api_requests": len(reqs), "api_concurrency": workers,
            "api_max_output_tokens": int(getattr(self.model, "api_max_output_tokens", None) or max_new_tokens),
            "api_retries": sum(r.retries for r in reqs), "api_retry_wait_s": sum(r.retry_wait_s for r in reqs),
            "api_failed_requests": len(reqs) - len(ok),
            "api_finish_reasons": ",".join(sorted({str(r.finish_reason) for r in ok})) or None,
            "ttft_request_s_mean": sum(ttfts) / len(ttfts) if ttfts else None,
            "ttft_request_s_max": max(ttfts, default=None),
            "latency_request_s_mean": sum(lat) / len(lat) if lat else None,
            "output_deltas": sum(len(r.delta_ns) for r in ok),
            "step_ns_meaning": "arrival of streamed text deltas at the client (k-th delta of the slowest stream)",
            "tokens_source": "server usage report" if complete else None,
            "tokens_reason": None if complete else (
                f"the server reported no usage for {missing} of {len(ok)} requests; not counted here" if ok
                else "no request succeeded"),
            "cached_input_tokens": tot["cached"], "reasoning_tokens": tot["reasoning"],
        }
        if getattr(self.model, "provider", None):
            out.update(prices.cost(self.price, tot["input"], tot["output"], tot["cached"]))
        else:
            out.update(cost_usd=None, cost_input_usd=None, cost_output_usd=None, price_table_date=None,
                       cost_reason="not a priced provider model (model.provider is unset)")
        out.update(self.estimate(tot["output"]))
        if self.api.energy_estimate in ("ecologits", "both"):
            from energyray.footprint import ecologits_estimate

            per_req = [((r.usage or {}).get("output"), (r.end_ns - r.attempt_ns) / 1e9) for r in ok]
            out.update(ecologits_estimate.estimate(getattr(self.model, "provider", None), self.api_model, per_req))
        return out

    def estimate(self, output_tokens: int | None) -> dict[str, Any]:
        """energy_estimated_j after Epoch AI's method (module doc); null with a reason, never 0."""
        method = self.api.energy_estimate
        if method not in ("flops", "both"):
            return {"energy_estimated_j": None, "energy_estimated_source": None, "energy_estimate_method": None,
                    "energy_estimate_reason": f"off (api.energy_estimate={method})"}
        n_b = getattr(self.model, "estimate_active_params_b", None)
        if not n_b:
            reason = f"model {self.model.name!r} has no estimate_active_params_b in conf/model/"
        elif not output_tokens:
            reason = "no output tokens reported by the server"
        else:
            reason = None
        a = self.api
        desc = (f"flops (Epoch AI 2025, 'How much energy does ChatGPT use?'): 2 x {n_b}e9 active params "
                f"(assumed: {getattr(self.model, 'estimate_note', '') or 'no source given'}) x output tokens "
                f"/ ({a.estimate_gpu_peak_flops:.3g} FLOP/s x {a.estimate_utilization:g} utilization) x "
                f"{a.estimate_gpu_power_w:g} W per GPU (incl. PUE); input tokens and parallel sampling not counted")
        if reason is not None:
            return {"energy_estimated_j": None, "energy_estimated_source": None, "energy_estimate_method": desc,
                    "energy_estimate_reason": reason}
        assert n_b is not None and output_tokens is not None
        gpu_s = 2 * float(n_b) * 1e9 * output_tokens / (a.estimate_gpu_peak_flops * a.estimate_utilization)
        return {"energy_estimated_j": gpu_s * a.estimate_gpu_power_w, "energy_estimated_source": "estimated",
                "energy_estimate_method": desc, "energy_estimate_reason": None}


def with_base_url(api: Any, base_url: str, endpoint: str | None = None) -> Any:
    """A copy of an ApiConfig aimed at another server (backend=server's client)."""
    return replace(api, base_url=base_url, endpoint=endpoint or api.endpoint)


def chat_requests(prompts: list[str], *, model: str, base_url: str | None, api_key: str, max_output_tokens: int,
                  concurrency: int, timeout_s: float, max_retries: int, backoff_s: float, backoff_max_s: float,
                  temperature: float | None, connect_timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Plain (not streamed) Chat Completions requests, at most `concurrency` in flight, each
    retried as backend=openai's are (429, 5xx, timeouts, connection errors; exponential backoff
    with full jitter, or Retry-After, capped at backoff_max_s): the LLM judge's transport.
    One dict per prompt, in order: text, input_tokens, output_tokens, cached_input_tokens
    (the server's usage report; None where it sent none), finish_reason, retries, and error
    (the last failure in one line, scrubbed of the key; the other fields None then). Never raises
    for a request's failure; a missing `openai` package is every prompt's error."""
    try:
        import openai
    except ImportError:
        return [{"text": None, "input_tokens": None, "output_tokens": None, "cached_input_tokens": None,
                 "finish_reason": None, "retries": 0,
                 "error": "the openai package is not installed: pip install 'energyray[api]'"} for _ in prompts]

    def scrub(text: str) -> str:
        if api_key and api_key != PLACEHOLDER_KEY:
            text = text.replace(api_key, "***")
        return re.sub(r"\b(sk-[A-Za-z0-9_\-]{4})[A-Za-z0-9_\-]{8,}", r"\1***", text)

    def wait_for(e: Exception, attempt: int) -> float | None:
        retry_after = None
        if isinstance(e, openai.APIStatusError):
            if e.status_code != 429 and e.status_code < 500:
                return None
            retry_after = _retry_after_s(getattr(e.response, "headers", None))
        elif not isinstance(e, openai.APIConnectionError) and not _transport_error(e):
            return None
        if retry_after is not None:
            return min(retry_after, float(backoff_max_s))
        return random.uniform(0.0, min(float(backoff_max_s), float(backoff_s) * 2 ** attempt))

    client = openai.OpenAI(api_key=api_key or PLACEHOLDER_KEY, base_url=(base_url or OPENAI_BASE_URL).rstrip("/"),
                           timeout=openai.Timeout(timeout_s, connect=connect_timeout_s), max_retries=0)
    body: dict[str, Any] = {"max_completion_tokens": int(max_output_tokens)}
    if temperature is not None:
        body["temperature"] = temperature

    def one(prompt: str) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                resp = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                      **body)
                choices = getattr(resp, "choices", None) or []
                if not choices:
                    raise BackendError("the server's answer has no choices")
                u = _usage(getattr(resp, "usage", None), responses=False) or {}
                return {"text": _field(choices[0], "message", "content") or "", "input_tokens": u.get("input"),
                        "output_tokens": u.get("output"), "cached_input_tokens": u.get("cached"),
                        "finish_reason": getattr(choices[0], "finish_reason", None), "retries": attempt,
                        "error": None}
            except Exception as e:
                wait = wait_for(e, attempt)
                if wait is None or attempt >= max_retries:
                    tried = f" (after {attempt} retries)" if attempt else ""
                    return {"text": None, "input_tokens": None, "output_tokens": None, "cached_input_tokens": None,
                            "finish_reason": None, "retries": attempt, "error": scrub(f"{_error_text(e)}{tried}")}
                attempt += 1
                time.sleep(wait)

    try:
        with ThreadPoolExecutor(max(1, min(int(concurrency), len(prompts) or 1)),
                                thread_name_prefix="energyray-judge") as pool:
            return list(pool.map(one, prompts))
    finally:
        client.close()
