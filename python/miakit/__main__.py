"""``python -m miakit`` runs the command line (see ``miakit.cli``)."""

import sys

from miakit.cli import main

sys.exit(main())
