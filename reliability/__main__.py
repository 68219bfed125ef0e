"""`python -m reliability [--quick] [--model PATH]`: run the suite, print and save a summary."""

import sys

from reliability.run import main

if __name__ == "__main__":
    sys.exit(main())
