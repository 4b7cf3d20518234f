"""Datasets in their official layouts, label noise, transforms and the shared DataModule."""
