"""`python -m bench.cli ...`: mimic-bench without its console script (as on a machine where the package is not installed)."""
from bench.cli import main

main(prog_name="mimic-bench")
