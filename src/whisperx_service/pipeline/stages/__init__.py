"""The per-chunk stages: transcribe (faster-whisper), align (words), diarize (pyannote), and the chunk step."""
