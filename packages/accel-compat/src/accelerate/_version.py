"""The Accelerate API level this wheel maps, and the accel release implementing it.

Example:
    >>> from accelerate._version import API_LEVEL, __version__
    >>> __version__.startswith(API_LEVEL + "+accel")
    True
"""

API_LEVEL = "1.15.0"
ACCEL_VERSION = "0.1.0"
__version__ = f"{API_LEVEL}+accel{ACCEL_VERSION}"
