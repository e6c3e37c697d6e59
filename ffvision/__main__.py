"""python -m ffvision (also what torchrun runs)."""

import sys

from ffvision.cli import main

sys.exit(main())
