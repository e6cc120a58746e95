"""Record what each Python interpreter of a run costs (loaded through ``PYTHONPATH``).

With this folder on ``PYTHONPATH``, every interpreter started below it (pytest, launchers,
workers, benchmarks) appends one tab-separated line at exit to ``$TESTTIME_LOG``
(default ``/tmp/accel-cpu.tsv``): pid, parent pid, CPU seconds (user + system), wall
seconds, whether it imported torch, the pytest test that started it and its command line.
``tools/testtime/report.py`` sums the lines. Interpreters killed by a signal write nothing.

    PYTHONPATH=tools/testtime OMP_NUM_THREADS=1 uv run pytest
    uv run python tools/testtime/report.py /tmp/accel-cpu.tsv
"""

import atexit
import os
import resource
import sys
import time

_STARTED = time.monotonic()
_LOG = os.environ.get("TESTTIME_LOG", "/tmp/accel-cpu.tsv")


def _record() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    fields = [
        str(os.getpid()),
        str(os.getppid()),
        f"{usage.ru_utime + usage.ru_stime:.2f}",
        f"{time.monotonic() - _STARTED:.2f}",
        str("torch" in sys.modules),
        os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
        " ".join(sys.argv)[:400].replace("\t", " "),
    ]
    try:
        with open(_LOG, "a") as log:
            log.write("\t".join(fields) + "\n")
    except OSError:
        pass


atexit.register(_record)
