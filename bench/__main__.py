"""``python -m bench``: run the benchmark suite (see ``python -m bench --help``)."""

from bench._cli import main

raise SystemExit(main())
