"""The `corral` command line: parsing only; see corral.cli.main."""
