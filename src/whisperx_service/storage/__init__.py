"""Job files on shared storage (the record): source, manifest, checkpoints, result; atomic writes."""
