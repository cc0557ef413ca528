"""``python -m fastrnn``: the same as the ``fastrnn`` command."""

from fastrnn.cli import main

raise SystemExit(main())
