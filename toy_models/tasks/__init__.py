"""Task families for toy models: samplers, ground truth and metrics, one file each."""
