"""Evaluation of base and VAR maps.

Localisation metrics, the grid pointing game, objects in COCO images, sanity checks, insertion/deletion,
shared and actionable features, and the base-vs-VAR tables that combine them.
"""
