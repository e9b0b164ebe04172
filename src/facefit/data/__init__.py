"""Data sets: identity folders, attributes, verification pairs files."""
