"""Building blocks of the usseg MONAI Label app (configs, infer/train tasks, strategies, scoring, datastores)."""
