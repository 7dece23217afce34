"""Sandboxes: one driver protocol (`interpreter`), several ways to start the driver."""
