import sys

try:
    from core.cli import main
except KeyboardInterrupt:  # Ctrl-C while the command is still loading: nothing was done yet
    sys.exit(130)

sys.exit(main())
