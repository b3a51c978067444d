"""``python -m plumline.sandbox`` runs ``plumline exec`` standalone."""

import sys

from .cli import main

sys.exit(main())
