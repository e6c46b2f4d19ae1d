"""WhisperX on one job's audio; knows nothing of HTTP, Celery or Redis.

audio/    ffmpeg decode to PCM on disk, chunk plan, ASR windows (VAD), language vote
models/   load models (names or local paths) and prepare the offline bundle
stages/   transcribe, align, diarize one chunk
post/     speakers on words, segments, speaker linking across chunks, seam merge
plan.py   what a job fixes once (chunks, windows, language) and where its files live
runner.py the job's path through all of it: `run_pipeline`
"""
