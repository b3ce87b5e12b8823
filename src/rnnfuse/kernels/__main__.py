"""``python -m rnnfuse.kernels``: build the C++ kernels ahead of time (see
:mod:`rnnfuse.kernels.commands`)."""

import sys

from .commands import main

sys.exit(main())
