"""``python -m demo``: the offline demo (``make demo`` runs it)."""

import sys

from demo.driver import main

sys.exit(main())
