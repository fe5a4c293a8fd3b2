"""`python -m moeplan ...` runs the CLI, as the `moeplan` console script does."""

from moeplan.cli.script import run

run()
