"""``structlayers bench``: the speed harness, and the machine probes and roofline bound it reports."""
