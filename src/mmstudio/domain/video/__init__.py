"""Video generation on the job system: the job handler (submit once, poll, download), more to come."""
