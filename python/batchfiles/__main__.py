"""``python -m batchfiles``: the command line, as the ``batchfiles`` console script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
