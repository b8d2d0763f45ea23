"""Offline side: synthetic data, training and finetuning, evaluation, export and publishing (needs torch).

Importing `training` itself imports nothing heavy, so the CLI starts fast in the torch-free worker image.
"""
