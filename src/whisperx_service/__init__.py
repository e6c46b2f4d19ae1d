"""whisperx-service: a self-hosted speech-to-text job service built on WhisperX."""

__version__ = "0.1.0"
