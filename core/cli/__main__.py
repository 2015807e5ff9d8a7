"""``python -m fidelis.core.cli``: the ``fidelis`` command."""
from . import main

main()
