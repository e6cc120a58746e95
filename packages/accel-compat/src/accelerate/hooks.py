"""``accelerate.hooks``: Accelerate's names, served from accel (see ``accelerate._mapping``).

Example:
    >>> from accelerate.hooks import add_hook_to_module  # doctest: +SKIP
"""

from accelerate._lazy import serve

__getattr__, __dir__ = serve(globals())
