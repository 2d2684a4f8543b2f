"""``python -m mobius_artifacts``: the ``mobius-artifacts`` command line."""

from mobius_artifacts.cli import main

if __name__ == "__main__":
    main()
