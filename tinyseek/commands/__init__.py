"""CLI command groups; each module registers its subcommands through add_parsers()."""
