"""Network feature backends (the paper's networks, S2DNet) and their checkpoints."""
