"""`python -m kinsul ...` is `kinsul ...` (how `kinsul sweep --workers N` starts its worker processes)."""

from kinsul.cli import main

raise SystemExit(main())
