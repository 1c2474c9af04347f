"""The command line: parse, call the core, render. No AWS calls are made here."""
