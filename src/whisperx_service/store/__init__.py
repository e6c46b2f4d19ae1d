"""Redis (the index and the transport): every key in `keys.py`, state changes as Lua scripts, the job stores."""
