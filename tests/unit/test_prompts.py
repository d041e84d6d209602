"""Prompts built before a trial's window: chat templates (auto | on | off) and exact lengths.

Real tokenizers throughout: the built-in tiny Llama (no chat template; a copy of it given a
short template), random ids for random weights, the vLLM backend through its fake engine
(whose tokenizer is the model's real one), the API backends' endpoint rules, and (slow) the
default model, Gemma 3 270M, whose GGUF carries no chat template. Covered: which of auto,
on and off applies a template and why not, where a template came from, prompts of exactly
N tokens with and without a template (the template's tokens kept whole), seeded random ids,
generate fed the ids without tokenising again, and per-sequence tokens and times.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from energyray.backends import vllm as vb
from energyray.backends import vllm_fake
from energyray.backends.base import (
    CHAT_TEMPLATES,
    Generation,
    Prompts,
    estimate_tokens,
    plain_prompts,
    template_decision,
)
from energyray.backends.openai_api import api_prompts
from energyray.backends.prompting import SEPARATOR, random_ids
from energyray.backends.server import ServerBackend
from energyray.backends.transformers import TransformersBackend, build_tiny_llama
from energyray.config import ModelConfig, ServerConfig
from energyray.errors import ConfigError, TrialFailed

REPO_ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Question: What is the capital of France?\nAnswer:"
LONG = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 40)
TEXTS = [QUESTION, "Hello", LONG]
LENGTHS = [8, 64, 200]
# A short template (4 tokens of its own with the tiny tokenizer), so that 8 tokens leave room for text.
TEMPLATE = "{% for m in messages %}<s>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}"


def catalogue(name: str) -> ModelConfig:
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{name}.yaml"))
    model = OmegaConf.to_object(node)
    assert isinstance(model, ModelConfig)
    return model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.getbasetemp() / "shared-tiny-llama")


@pytest.fixture(scope="module")
def chat_dir(tiny_dir, tmp_path_factory) -> Path:
    """The tiny model with a chat template in its tokenizer_config.json."""
    d = tmp_path_factory.mktemp("templated") / "tiny-templated"  # no "chat" in the path: auto must not guess
    shutil.copytree(tiny_dir, d)
    cfg_path = d / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = TEMPLATE
    cfg_path.write_text(json.dumps(cfg))
    return d


def _load(path: Path, **model: object) -> TransformersBackend:
    b = TransformersBackend()
    b.load(ModelConfig(**{"name": "tiny-llama", "path": str(path), **model}), "real", "baseline", "cpu",  # type: ignore[arg-type]
           str(path.parent), 0)
    return b


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    b = _load(tiny_dir)
    yield b
    b.unload()


@pytest.fixture(scope="module")
def chat(chat_dir):
    """The templated copy under an instruct-looking name: auto applies its template."""
    b = _load(chat_dir, name="tiny-chat-it")
    yield b
    b.unload()


# -- the auto | on | off decision --------------------------------------------------------------
@pytest.mark.parametrize(("name", "hub_id", "instruct", "has_template", "applied"), [
    ("gemma3-1b", "google/gemma-3-1b-it", None, True, True),
    ("qwen2-7b", "Qwen/Qwen2-7B-Instruct", None, True, True),
    ("llama2", "meta-llama/Llama-2-7b-chat-hf", None, True, True),
    ("gemma3-270m", "google/gemma-3-270m", None, True, False),  # a base model that ships a template
    ("qwen2-7b-base", "Qwen/Qwen2-7B", None, True, False),
    ("italian-gpt", None, None, True, False),  # "it" only as a separate part of the name
    ("gemma3-1b", "google/gemma-3-1b-it", None, False, False),  # no template: nothing to apply
    ("my-model", None, True, True, True),  # the catalogue's word wins over the name
    ("my-model-it", None, False, True, False),
    ("my-model", None, True, False, False),
])
def test_auto_applies_the_template_to_instruct_models_only(name, hub_id, instruct, has_template, applied):
    model = ModelConfig(name=name, hub_id=hub_id, instruct=instruct)
    apply, reason = template_decision("auto", model, has_template, "tokenizer_config.json of x")
    assert apply is applied
    assert (reason is None) is applied


def test_auto_says_why_not():
    base = template_decision("auto", ModelConfig(name="b", instruct=False), False, "w")[1]
    assert base is not None and "base model" in base and "no chat template" in base
    unknown = template_decision("auto", ModelConfig(name="m", hub_id="org/m"), True, "w")[1]
    assert unknown is not None and "instruct: true" in unknown and "org/m" in unknown
    assert template_decision("off", ModelConfig(name="m", instruct=True), True, "w") == (False, "chat_template=off")
    assert template_decision("on", ModelConfig(name="m", instruct=False), True, "w") == (True, None)


def test_on_without_a_template_fails_and_names_the_fix():
    with pytest.raises(TrialFailed) as e:
        template_decision("on", ModelConfig(name="tiny-llama"), False, "tokenizer_config.json of /d")
    msg = str(e.value)
    assert "chat_template=on" in msg and "tiny-llama" in msg and "no chat template" in msg
    assert "chat_template=auto or off" in msg


def test_unknown_mode_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        template_decision("yes", ModelConfig(name="m"), True, "w")
    assert all(m in str(e.value) for m in CHAT_TEMPLATES)


def test_the_catalogue_marks_instruct_models():
    """gemma3-270m (the default) and tiny-llama are base models; every -it/Instruct hub id is instruct."""
    assert catalogue("gemma3-270m").instruct is False
    assert catalogue("tiny-llama").instruct is False
    for name in ("gemma3-1b", "gemma3-4b", "llama3-8b", "mistral-7b", "qwen2-7b", "qwen2.5-72b", "deepseek-r1-8b"):
        assert catalogue(name).instruct is True, name


# -- the tiny model: no template ---------------------------------------------------------------
def test_tiny_auto_sends_raw_text_and_says_why(tiny, tiny_dir):
    p = tiny.prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0)
    assert isinstance(p, Prompts)
    assert p.chat_template == "none" and p.chat_template_source is None
    assert p.chat_template_reason is not None and "has no chat template" in p.chat_template_reason
    assert str(tiny_dir) in p.chat_template_reason
    assert p.texts == TEXTS
    assert p.inputs == [tiny.tokenizer(t)["input_ids"] for t in TEXTS]
    assert p.input_tokens == [len(i) for i in p.inputs]
    # the catalogue entry (instruct: false) gives the base-model reason
    catalogued = replace(tiny.model_config, instruct=False)
    tiny.model_config, saved = catalogued, tiny.model_config
    try:
        reason = tiny.prompts(TEXTS, chat_template="auto").chat_template_reason
    finally:
        tiny.model_config = saved
    assert reason is not None and "base model" in reason


def test_tiny_on_fails_off_is_raw(tiny):
    with pytest.raises(TrialFailed, match="chat_template=on, but the tokenizer of 'tiny-llama'"):
        tiny.prompts(TEXTS, chat_template="on")
    off = tiny.prompts(TEXTS, chat_template="off")
    assert off.chat_template == "none" and off.chat_template_reason == "chat_template=off"


def test_generate_takes_the_ids_without_tokenising_again(tiny, monkeypatch):
    """Prompts.inputs reach the model as they are: the same output as from the texts, and the
    tokenizer is not called inside generate."""
    p = tiny.prompts(TEXTS[:2], chat_template="off")
    from_text = tiny.generate(TEXTS[:2], 4, ignore_eos=True)

    def no_tokenising(*a, **k):
        raise AssertionError("generate tokenised a prompt")

    monkeypatch.setattr(type(tiny.tokenizer), "__call__", no_tokenising)
    from_ids = tiny.generate(p.inputs, 4, ignore_eos=True)
    assert from_ids.new_ids.tolist() == from_text.new_ids.tolist()
    assert from_ids.seq_input_tokens == from_text.seq_input_tokens == p.input_tokens
    assert from_ids.input_tokens == sum(p.input_tokens)


@pytest.mark.parametrize("n", LENGTHS)
def test_exact_length_without_a_template(tiny, n):
    p = tiny.prompts(TEXTS, prompt_tokens=n, chat_template="off", seed=0)
    assert p.input_tokens == [n] * len(TEXTS) and [len(i) for i in p.inputs] == [n] * len(TEXTS)
    # the rule: the text's tokens, repeated with a blank line between copies, cut at n
    sep = tiny.tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    for text, ids in zip(TEXTS, p.inputs, strict=True):
        body = tiny.tokenizer(text)["input_ids"]
        assert ids == ((body + sep) * (n // len(body) + 1))[:n]
    gen = tiny.generate(p.inputs, 2, ignore_eos=True)
    assert gen.seq_input_tokens == [n] * len(TEXTS) and gen.input_tokens == n * len(TEXTS)
    assert p.texts[1].startswith("Hello")


def test_prompt_tokens_beyond_the_context_fails(tiny):
    with pytest.raises(TrialFailed, match="context"):
        tiny.prompts(["x"], prompt_tokens=513, chat_template="off")


# -- a template ----------------------------------------------------------------------------------
def test_template_applied_with_its_source(chat, chat_dir):
    p = chat.prompts(TEXTS, chat_template="auto")
    assert p.chat_template == "applied" and p.chat_template_reason is None
    assert p.chat_template_source == f"tokenizer_config.json of {chat_dir}"
    assert p.texts[0] == f"<s>{QUESTION}\nA:"
    msgs = [[{"role": "user", "content": t}] for t in TEXTS]
    assert p.inputs == [chat.tokenizer.apply_chat_template(m, add_generation_prompt=True, return_dict=False)
                        for m in msgs]
    assert p.input_tokens == [len(i) for i in p.inputs]


def test_auto_leaves_a_templated_model_raw_unless_it_is_known_instruct(chat_dir):
    b = _load(chat_dir, name="tiny-llama")
    try:
        auto = b.prompts(TEXTS, chat_template="auto")
        assert auto.chat_template == "none" and "not known to be an instruct" in str(auto.chat_template_reason)
        assert b.prompts(TEXTS, chat_template="on").chat_template == "applied"
        b.model_config = replace(b.model_config, instruct=True)
        assert b.prompts(TEXTS, chat_template="auto").chat_template == "applied"
    finally:
        b.unload()


@pytest.mark.parametrize("n", LENGTHS)
def test_exact_length_with_a_template_keeps_its_tokens(chat, n):
    p = chat.prompts(TEXTS, prompt_tokens=n, chat_template="on", seed=0)
    assert p.chat_template == "applied"
    assert [len(i) for i in p.inputs] == p.input_tokens == [n] * len(TEXTS)
    tok = chat.tokenizer
    bos, tail = [tok.bos_token_id], tok("\nA:", add_special_tokens=False)["input_ids"]
    for ids in p.inputs:
        assert ids[:1] == bos and ids[-len(tail):] == tail  # the template's own tokens, whole
    assert all(t.startswith("<s>") and t.endswith("A:") for t in p.texts)
    gen = chat.generate(p.inputs, 2, ignore_eos=True)
    assert gen.seq_input_tokens == [n] * len(TEXTS)


def test_a_length_shorter_than_the_template_fails(chat):
    with pytest.raises(TrialFailed, match="leaves no room for the text"):
        chat.prompts(TEXTS, prompt_tokens=4, chat_template="on")
    assert chat.prompts(TEXTS, prompt_tokens=5, chat_template="on").input_tokens == [5, 5, 5]


# -- random weights ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dummy(tmp_path_factory):
    arch = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "model" / "tiny-llama.yaml").architecture)
    b = TransformersBackend()
    b.load(ModelConfig(name="tiny-llama", architecture=arch), "dummy", "baseline", "cpu",  # type: ignore[arg-type]
           str(tmp_path_factory.mktemp("dummy")), 0)
    yield b
    b.unload()


@pytest.mark.parametrize("n", LENGTHS)
def test_random_ids_of_exact_length_seeded_and_reproducible(dummy, n):
    p = dummy.prompts(TEXTS, prompt_tokens=n, chat_template="auto", seed=7)
    assert p.input_tokens == [n] * 3 and [len(i) for i in p.inputs] == [n] * 3
    assert p.texts == [f"<{n} random token ids>"] * 3
    assert p.chat_template == "none" and "random" in str(p.chat_template_reason)
    assert all(10 <= t < 1000 for ids in p.inputs for t in ids)
    assert len({tuple(i) for i in p.inputs}) == 3  # each request its own draw
    assert dummy.prompts(TEXTS, prompt_tokens=n, chat_template="off", seed=7).inputs == p.inputs
    assert dummy.prompts(TEXTS, prompt_tokens=n, chat_template="off", seed=8).inputs != p.inputs
    assert p.inputs == random_ids([n] * 3, 1000, 7)
    gen = dummy.generate(p.inputs, 2, ignore_eos=True)
    assert gen.seq_input_tokens == [n] * 3


def test_random_ids_without_prompt_tokens_follow_the_texts(dummy):
    p = dummy.prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0)
    assert p.input_tokens == [estimate_tokens(t) for t in TEXTS]
    with pytest.raises(TrialFailed, match="random token ids"):
        dummy.prompts(TEXTS, prompt_tokens=8, chat_template="on", seed=0)


# -- per-sequence tokens and times ----------------------------------------------------------------
def test_per_sequence_times_come_from_the_steps(tiny, monkeypatch):
    """A batch where row 0 stops at EOS after 2 tokens: its last token is step 2's time."""
    eos = tiny.model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    real_generate = tiny.model.generate

    def early_eos(*args, **kwargs):
        out = real_generate(*args, **kwargs).clone()
        start = kwargs["input_ids"].shape[1]
        out[0, start + 1] = eos
        out[0, start + 2:] = tiny.model.generation_config.pad_token_id
        return out

    monkeypatch.setattr(tiny.model, "generate", early_eos)
    p = tiny.prompts(TEXTS, chat_template="off")
    gen = tiny.generate(p.inputs, 5, ignore_eos=False)
    assert gen.lengths == [2, 5, 5]
    assert gen.seq_first_ns == [gen.step_ns[0]] * 3
    assert gen.seq_last_ns == [gen.step_ns[1], gen.step_ns[4], gen.step_ns[4]]
    assert all(gen.start_ns < f <= last <= gen.end_ns for f, last in zip(gen.seq_first_ns, gen.seq_last_ns, strict=True))
    assert gen.seq_finish_reasons == ["stop", "length", "length"]
    assert gen.seq_output_tokens == [2, 5, 5] and gen.seq_input_tokens == p.input_tokens
    reqs = gen.per_request()
    assert [r["input_tokens"] for r in reqs] == p.input_tokens
    assert all(0 < r["ttft_s"] <= r["latency_s"] <= gen.duration_s for r in reqs)
    assert reqs[0]["latency_s"] < reqs[1]["latency_s"] == reqs[2]["latency_s"]


def test_per_request_where_nothing_is_known():
    gen = Generation(input_tokens=None, output_tokens=None, start_ns=0, end_ns=10, lengths=[3, 4])
    assert gen.per_request() == [{"input_tokens": None, "output_tokens": None, "ttft_s": None, "latency_s": None,
                                  "finish_reason": None}] * 2
    timed = Generation(input_tokens=5, output_tokens=7, start_ns=0, end_ns=100, lengths=[3, 4],
                       seq_first_ns=[20, 40], seq_last_ns=[60, 90], seq_start_ns=[0, 30])
    assert [(r["ttft_s"], r["latency_s"]) for r in timed.per_request()] == [(20e-9, 60e-9), (10e-9, 60e-9)]


# -- vLLM, through the fake engine holding the model's real tokenizer ----------------------------------
@pytest.fixture
def fake_vllm(monkeypatch):
    mod = vllm_fake.module()
    monkeypatch.setattr(vb, "_import_vllm", lambda: mod)
    return mod


@pytest.mark.parametrize("n", LENGTHS)
def test_vllm_exact_length_token_prompts(fake_vllm, tmp_path, n):
    b = vb.VllmBackend()
    b.load(catalogue("tiny-llama"), "real", "bf16", "auto", str(tmp_path), 0)
    p = b.prompts(TEXTS, prompt_tokens=n, chat_template="auto", seed=0)
    assert p.input_tokens == [n] * 3 and p.chat_template == "none" and "base model" in str(p.chat_template_reason)
    gen = b.generate(p.inputs, 4, ignore_eos=False)
    sent = fake_vllm.created[0].calls[0][0]
    assert sent == [{"prompt_token_ids": i} for i in p.inputs]
    assert gen.seq_input_tokens == [n] * 3 and gen.seq_output_tokens == gen.lengths == [2, 4, 4]
    assert gen.seq_finish_reasons == ["stop", "length", "length"]
    assert all(f <= last for f, last in zip(gen.seq_first_ns, gen.seq_last_ns, strict=True))
    with pytest.raises(TrialFailed, match="chat_template=on"):
        b.prompts(TEXTS, chat_template="on")


def test_vllm_applies_the_engines_tokenizer_template(fake_vllm, chat_dir, tmp_path):
    b = vb.VllmBackend()
    b.load(ModelConfig(name="tiny-chat", path=str(chat_dir), instruct=True), "real", "bf16", "auto", str(tmp_path), 0)
    p = b.prompts(TEXTS, prompt_tokens=64, chat_template="auto", seed=0)
    assert p.chat_template == "applied" and p.input_tokens == [64] * 3
    assert p.chat_template_source == f"tokenizer_config.json of {chat_dir}, through vLLM"
    assert all(t.startswith("<s>") and t.endswith("A:") for t in p.texts)


def test_vllm_dummy_random_ids_match_the_transformers_ones(fake_vllm, dummy, tmp_path):
    b = vb.VllmBackend()
    b.load(catalogue("tiny-llama"), "dummy", "bf16", "auto", str(tmp_path), 0)
    p = b.prompts(TEXTS, prompt_tokens=64, chat_template="auto", seed=3)
    assert p.inputs == dummy.prompts(TEXTS, prompt_tokens=64, chat_template="auto", seed=3).inputs
    gen = b.generate(p.inputs, 3, ignore_eos=True)
    assert gen.seq_input_tokens == [64] * 3


# -- API backends and the plain fallback --------------------------------------------------------------
def test_chat_endpoints_leave_the_template_to_the_server():
    for endpoint in ("chat", "responses"):
        p = api_prompts(TEXTS, endpoint=endpoint, backend="openai", setting="api.endpoint", prompt_tokens=None,
                        chat_template="auto")
        assert p.chat_template == "applied" and "the server's own chat template" in str(p.chat_template_source)
        assert p.inputs == TEXTS and p.input_tokens == [None] * 3
        with pytest.raises(TrialFailed, match="api.endpoint=completions"):
            api_prompts(TEXTS, endpoint=endpoint, backend="openai", setting="api.endpoint", prompt_tokens=None,
                        chat_template="off")


def test_completions_sends_raw_text():
    p = api_prompts(TEXTS, endpoint="completions", backend="openai", setting="api.endpoint", prompt_tokens=None,
                    chat_template="auto")
    assert p.chat_template == "none" and "raw text" in str(p.chat_template_reason) and p.inputs == TEXTS
    with pytest.raises(TrialFailed, match="api.endpoint=chat"):
        api_prompts(TEXTS, endpoint="completions", backend="openai", setting="api.endpoint", prompt_tokens=None,
                    chat_template="on")


def test_server_backend_follows_its_endpoint(tmp_path):
    b = ServerBackend(server=ServerConfig())  # completions by default; nothing launched
    p = b.prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0)
    assert p.chat_template == "none" and "server.endpoint=chat" in str(p.chat_template_reason)
    chat = ServerBackend(server=ServerConfig(endpoint="chat"))
    assert chat.prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0).chat_template == "applied"


@pytest.mark.parametrize("backend", ["openai", "server"])
def test_prompt_tokens_on_an_api_backend_names_those_that_support_it(backend):
    with pytest.raises(TrialFailed) as e:
        api_prompts(TEXTS, endpoint="chat", backend=backend, setting="x", prompt_tokens=64, chat_template="auto")
    assert f"backend={backend} does not" in str(e.value) and "transformers and vllm" in str(e.value)


def test_plain_prompts():
    p = plain_prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0, backend="mine")
    assert p.inputs == p.texts == TEXTS and p.chat_template == "none"
    assert p.chat_template_reason == "backend=mine applies no chat template"
    with pytest.raises(TrialFailed, match="backend=mine applies no chat template"):
        plain_prompts(TEXTS, chat_template="on", backend="mine")
    with pytest.raises(TrialFailed, match="transformers and vllm support it"):
        plain_prompts(TEXTS, prompt_tokens=8, backend="mine")


def test_prompts_before_load_is_an_error():
    from energyray.errors import BackendError

    with pytest.raises(BackendError, match="before load"):
        TransformersBackend().prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0)


# -- the default model: Gemma 3 270M (a base model; its GGUF has no chat template) ------------------------
@pytest.mark.slow
def test_default_model_auto_is_raw_and_lengths_are_exact(tmp_path_factory):
    gemma = catalogue("gemma3-270m")
    home = Path(os.environ.get("ENERGYRAY_CACHE") or "~/.cache/energyray").expanduser()
    cache = home if (home / "models" / "gemma3-270m" / ".complete").exists() else tmp_path_factory.mktemp("gemma")
    b = TransformersBackend()
    b.load(gemma, "real", "baseline", "cpu", str(cache), 0)  # converts the GGUF once where not cached
    try:
        assert not b.tokenizer.chat_template
        p = b.prompts(TEXTS, prompt_tokens=None, chat_template="auto", seed=0)
        assert p.chat_template == "none"
        assert p.chat_template_reason == ("'gemma3-270m' is a base model (instruct: false in its catalogue entry); "
                                          "its tokenizer has no chat template either")
        with pytest.raises(TrialFailed, match="no chat template"):
            b.prompts(TEXTS, chat_template="on")
        for n in LENGTHS:
            exact = b.prompts(TEXTS, prompt_tokens=n, chat_template="auto", seed=0)
            assert exact.input_tokens == [n] * 3
            assert all(ids[0] == b.tokenizer.bos_token_id for ids in exact.inputs)  # BOS kept, counted
        gen = b.generate(exact.inputs, 2, ignore_eos=True)
        assert gen.seq_input_tokens == [200] * 3
    finally:
        b.unload()
