"""Scale-to-zero of the chart's renders on Ray's own autoscaler (fake multi-node provider)."""
