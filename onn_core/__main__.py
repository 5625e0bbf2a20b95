import sys

from .cli import main

# Guarded: sweep workers (loky, Dask's LocalCluster) start fresh interpreters that import this
# module again and must not re-run the command.
if __name__ == "__main__":
    sys.exit(main())
