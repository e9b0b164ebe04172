"""The command-line interface (typer). Thin: each command calls the library."""
