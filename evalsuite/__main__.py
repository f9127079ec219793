"""`python -m evalsuite ...`: the evalsuite command."""
import sys

from evalsuite.cli import main

sys.exit(main())
