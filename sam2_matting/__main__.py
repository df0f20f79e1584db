import sys

from sam2_matting.cli import main

sys.exit(main())
