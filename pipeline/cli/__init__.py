"""The `sphere` command line: thin click commands over the library."""
