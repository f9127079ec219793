"""`python -m ttt_omni ...`: the ttt-omni command."""
import sys

from ttt_omni.cli import main

sys.exit(main())
