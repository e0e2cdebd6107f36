"""Shelf Audit Pipeline: data tools (synth, pack, inspect) and the command line."""
