"""`python -m saas` is the `saas` command."""
from saas.cli import main

main()
