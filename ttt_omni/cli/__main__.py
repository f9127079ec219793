"""`python -m ttt_omni.cli ...` (torchrun -m ttt_omni.cli train ... for several processes)."""
import sys

from ttt_omni.cli import main

sys.exit(main())
