"""ttt-omni: Test-Time-Training layers for long-context speech language models."""
__version__ = "0.1.0"
