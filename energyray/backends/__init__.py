"""Inference backends: one small protocol (base.py), one module per engine.

`PRECISIONS` is the one record of what each backend supports: the driver validates a sweep
against it before anything runs, without importing torch or an engine. A hosted API model
has one precision, `baseline`: whatever the provider serves, unknown to us (its rows record
`precision: api`). backend=server's precisions are the keys of server.precision_args.
"""

PRECISIONS: dict[str, tuple[str, ...]] = {
    "transformers": ("baseline", "fp32", "fp16", "bf16", "int8", "nf4", "fp4"),
    "openai": ("baseline",),
    "server": ("baseline", "fp32", "fp16", "bf16", "int8", "nf4"),
}
