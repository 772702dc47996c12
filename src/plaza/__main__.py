"""`python -m plaza` is the `plaza` command."""

from plaza.cli import main

main()
