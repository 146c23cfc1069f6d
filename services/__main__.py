"""`python -m tessera` runs the `tessera` command."""

import sys

from .cli import main

sys.exit(main())
