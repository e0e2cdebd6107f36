"""Custom TFX components of the Shelf Audit Pipeline."""
