"""The labeled HR dataset: the synthetic generator, real sources (folder, url, kaggle) and `download.run`."""
