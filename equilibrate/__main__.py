"""`python -m equilibrate` is the `equilibrate` command."""

import sys

from equilibrate.cli import main

sys.exit(main())
