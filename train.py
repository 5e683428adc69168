"""Fine-tune a vision language model: `uv run python train.py --help` lists the options.

With no arguments it runs the offline demo: the demo VLM learns to read handwritten digits.
"""

import sys

from vlmtune.cli import main

if __name__ == "__main__":
    sys.exit(main())
