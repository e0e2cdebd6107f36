"""Data tools for the shelf photo contract: synthesise, pack and inspect TFRecords."""
