"""energyray: what LLM inference really costs, in joules, CO2, seconds and dollars.

`python -m energyray sweep=NAME [overrides]` runs a sweep; `python -m energyray report`
summarises the store. Importing this package imports neither torch nor ray nor vllm.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
