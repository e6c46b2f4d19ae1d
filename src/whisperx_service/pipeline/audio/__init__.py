"""Audio before the models: decode to 16 kHz PCM on disk, plan chunks, find ASR windows, vote the language."""
