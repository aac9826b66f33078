"""``python -m sharpsim`` = the ``sharpsim`` console script (useful from a source checkout on PYTHONPATH)."""

from sharpsim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
