"""``python -m image_rating`` runs the ``image-rating`` command line (also under ``torchrun -m``)."""

import sys

from .cli import main

sys.exit(main())
