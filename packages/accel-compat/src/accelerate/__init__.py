"""``accelerate``: Hugging Face Accelerate's import name, mapped onto accel.

Programs written against Accelerate (transformers' ``Trainer``, PEFT, TRL, user scripts)
import from here and get accel's implementations; nothing is implemented in this package.
Names are imported on first use. Importing it next to the real ``accelerate`` fails.

Example:
    >>> from accelerate import Accelerator  # doctest: +SKIP
    >>> import accelerate
    >>> accelerate.__version__  # doctest: +ELLIPSIS
    '1.15.0+accel...'
"""

from accelerate._guard import check_no_real_accelerate
from accelerate._lazy import serve
from accelerate._version import __version__

check_no_real_accelerate()

__getattr__, __dir__ = serve(globals())
