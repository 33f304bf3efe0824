"""`python -m minillm.cli ...` runs the `minillm` command."""
import sys

from . import main

sys.exit(main())
