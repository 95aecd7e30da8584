import sys

from tcpsh.cli import main

sys.exit(main())
