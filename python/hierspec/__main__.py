"""``python -m hierspec``: the command-line interface (see hierspec.cli)."""

from hierspec.cli import main

raise SystemExit(main())
