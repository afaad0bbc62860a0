"""Natural exemplars: each unit's top N images of a dataset (``tracker``), the dataset (``data``), the job."""
