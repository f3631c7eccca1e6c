"""The Ray engine: a plan cut into per-device parts (`plan`), the device actor (`worker`) and
the driver side (`engine`). Importing this package imports Ray."""
