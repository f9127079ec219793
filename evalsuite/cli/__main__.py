"""`python -m evalsuite.cli ...` (torchrun -m evalsuite.cli run ... for sharded runs)."""
import sys

from evalsuite.cli import main

sys.exit(main())
