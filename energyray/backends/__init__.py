"""Inference backends: one small protocol (base.py), one module per engine.

`PRECISIONS` is the one record of what each backend supports: the driver validates a sweep
against it before anything runs, without importing torch or an engine. A hosted API model
has one precision, `baseline`: whatever the provider serves, unknown to us (its rows record
`precision: api`). backend=server's precisions are the keys of server.precision_args.
"""

PRECISIONS: dict[str, tuple[str, ...]] = {
    # bitsandbytes: int8 (LLM.int8), nf4, fp4; "-dq" adds double quantisation (the 4-bit
    # blocks' scales quantised again to 8 bits, ~0.4 bit per weight saved: QLoRA's nf4 + DQ).
    "transformers": ("baseline", "fp32", "fp16", "bf16", "int8", "nf4", "fp4", "nf4-dq", "fp4-dq"),
    # vLLM: dtypes, or its own quantisation methods (fp8 in-flight; awq, gptq need checkpoints
    # quantised that way; nf4-dq is vLLM's in-flight bitsandbytes, which is NF4 + double quant).
    "vllm": ("baseline", "fp32", "fp16", "bf16", "fp8", "awq", "gptq", "nf4-dq"),
    # a hosted API: one precision, whatever the provider runs
    "openai": ("baseline",),
    # a local OpenAI-compatible server (transformers serve by default; server.precision_args)
    "server": ("baseline", "fp32", "fp16", "bf16", "int8", "nf4"),
    # diffusers text-to-image pipelines: dtypes only (baseline: fp16 on a GPU, fp32 on a CPU)
    "diffusers": ("baseline", "fp32", "fp16", "bf16"),
}
