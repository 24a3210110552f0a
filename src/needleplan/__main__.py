"""``python -m needleplan``: the same as the ``needleplan`` command."""

import sys

from .cli import main

sys.exit(main())
