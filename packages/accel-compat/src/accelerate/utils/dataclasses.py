"""``accelerate.utils.dataclasses``: Accelerate's names, served from accel (see ``accelerate._mapping``)."""

from accelerate._lazy import serve

__getattr__, __dir__ = serve(globals())
