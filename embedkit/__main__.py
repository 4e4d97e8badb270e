"""``python -m embedkit`` is the ``embedkit`` command."""

import sys

from embedkit.cli.main import main

sys.exit(main())
