"""`python -m tfmodel_devcluster.demo` = `tfmodel-demo`."""

import sys

from tfmodel_devcluster.demo.cli import main

sys.exit(main())
