"""`python -m psrlm.cli ...` (what `accelerate launch` runs for a training job; launch.py)."""

import sys

from psrlm.cli.main import main

sys.exit(main())
