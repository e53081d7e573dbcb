"""`python -m tfmodel_devcluster` = `tfmodel-cluster`."""

import sys

from tfmodel_devcluster.cli import main

sys.exit(main())
