"""Model families defined by the tests, to show that the seam (`model.families`) needs nothing else."""
