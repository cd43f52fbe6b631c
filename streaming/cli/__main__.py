"""``python -m streaming.cli``: the same as the ``worldstream`` console script."""

import sys

from streaming.cli import main

sys.exit(main())
