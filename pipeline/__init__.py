"""TFX DAG factory and runners for the Shelf Audit Pipeline."""
