"""``accelerate.accelerator``: Accelerate's names, served from accel (see ``accelerate._mapping``).

Example:
    >>> from accelerate.accelerator import Accelerator  # doctest: +SKIP
"""

from accelerate._lazy import serve

__getattr__, __dir__ = serve(globals())
