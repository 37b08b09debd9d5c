"""Running the MONAI Label app's server from Python (tests, benchmarks); see :mod:`.launcher`."""
