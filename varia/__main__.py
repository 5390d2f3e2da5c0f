"""`python -m varia`: the same as the `varia` command."""

from varia.cli import main

main()
