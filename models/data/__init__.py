"""Model inputs: annotations, the memory-mapped feature store, datasets/loaders, planted synthetic data."""
