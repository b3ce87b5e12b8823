"""``python -m rnnfuse.kernels``: build the C++ kernels ahead of time (see
:mod:`rnnfuse.kernels.build_command`)."""

import sys

from .build_command import main

sys.exit(main())
