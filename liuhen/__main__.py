"""`python -m liuhen`: the same as the `liuhen` command."""

from liuhen.cli import main

main()
