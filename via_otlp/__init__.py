"""via-otlp: learns the rhythm of every log pattern of every service and reports when it breaks."""

__version__ = "0.1.0"
