"""Developer and operator tools: benchmarks, the local stack, the demo, plots, message contracts and the
`anomalybert` command's root. Never shipped in the worker image."""
