import sys

from torchdet.cli import main

sys.exit(main())
