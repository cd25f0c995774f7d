"""CLI commands: one module each, with HELP, EXAMPLE, add_arguments(parser) and run(args) -> int."""
