"""`python -m evalsuite.humaneval pairs|raters ...`: the human-eval commands without the main CLI."""

import sys

from evalsuite.humaneval.cli import main

sys.exit(main())
