"""`python -m mmstudio`."""

from mmstudio.cli import main

main()
