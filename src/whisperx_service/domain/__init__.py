"""What the service is about, without I/O: jobs (status, stages, options, record), events, the transcript."""
