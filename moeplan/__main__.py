"""`python -m moeplan ...` runs the CLI, as the `moeplan` console script does."""

from moeplan.cli.main import main

main()
