"""`python -m bot` entry point."""

import sys

from bot.cli import main

if __name__ == "__main__":  # the encoder process (spawned) imports this module too
    sys.exit(main())
