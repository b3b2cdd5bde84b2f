"""``python -m kitrade.cli``."""

from kitrade.cli import main

main()
