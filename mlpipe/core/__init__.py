"""The engine: AWS access, diffing, planning and executing."""
