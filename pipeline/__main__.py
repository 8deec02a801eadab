"""`python -m pipeline` runs the `sphere` command line."""
from .cli import main

main()
