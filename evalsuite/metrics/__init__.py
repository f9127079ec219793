"""Metrics: pure functions from measurements to numbers (with CIs where they apply)."""
