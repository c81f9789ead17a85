"""`python -m wa_archive.cli`: the same as the `wa-archive` command."""

from wa_archive.cli import main

raise SystemExit(main())
