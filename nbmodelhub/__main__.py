"""``python -m nbmodelhub``: the ``dlv`` command."""

from nbmodelhub.cli import main

raise SystemExit(main())
