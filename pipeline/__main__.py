"""`python -m pipeline` runs the `sphere` command line."""
from pipeline.cli.main import main

main()
