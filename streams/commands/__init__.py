"""CLI subcommands. Each module adds its parser with `add_to(subparsers)` and sets `func`."""
