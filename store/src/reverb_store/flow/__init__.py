"""Flow control: a function's options (`options`) and the run gates that enforce them.

`options` is what registration stores and every run gate reads; the gates themselves
(`gates()`) are imported only where a worker is assembled, so `execution` can read the
options without importing its own gates.
"""

from reverb_store.flow.options import FlowOptions, check, parse

__all__ = ["FlowOptions", "check", "parse"]
