"""Settings every test run shares, whichever folder pytest starts from."""

import os

# Small torch ops run 10-70x slower on 2 cores with more than one thread; subprocesses
# (torchrun workers, fresh venvs) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
