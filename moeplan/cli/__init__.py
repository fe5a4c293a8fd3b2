"""The `moeplan` command line: a thin typer layer over the Python API (one module per command)."""
