"""The `einrel` command line: `demo`, `plan`, `calibrate` (`main`) and `place` (`place`)."""
