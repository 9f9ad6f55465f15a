"""`python -m inference.triton`: see inference/triton/__init__.py."""

import sys

from inference.triton.cli import main

sys.exit(main())
