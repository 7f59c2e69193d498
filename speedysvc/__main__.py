"""`python -m speedysvc FILE.ini` runs a supervisor; any `speedysvc` command works here too."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
