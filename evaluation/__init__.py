"""Evaluation: labelled data sets in (NAB, UCR, SMD, SMAP/MSL, the seed's CSVs), scores of a bundle and of
the baselines, per-point and range metrics, NAB scores and reports out. Never shipped in the worker image."""
