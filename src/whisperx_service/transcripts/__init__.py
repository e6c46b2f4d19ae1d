"""The transcript as text: word timing fill, text rules, and rendering to json/srt/vtt/txt/tsv.

Pure Python on `domain.transcript` models: the gateway and the worker both use it, and neither
imports the pipeline (or torch) for it.
"""
