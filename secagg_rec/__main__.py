"""``python -m secagg_rec`` runs the ``secagg-rec`` command line."""

from secagg_rec.cli import main

raise SystemExit(main())
