"""Synthetic datasets for the quickstarts and tests (made by tools/dataset_converters/)."""
