"""``accelerate.big_modeling``: Accelerate's names, served from accel (see ``accelerate._mapping``).

Example:
    >>> from accelerate.big_modeling import init_empty_weights  # doctest: +SKIP
"""

from accelerate._lazy import serve

__getattr__, __dir__ = serve(globals())
