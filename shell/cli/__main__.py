"""``python -m shell.cli``: the ``dml`` command, for child processes and tests."""

from shell.cli import main

if __name__ == "__main__":
    main()
