import sys

from tinyseek.cli import main

sys.exit(main())
