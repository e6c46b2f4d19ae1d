"""Model loading (names or local paths, HF token, offline hub) and the offline model bundle."""
