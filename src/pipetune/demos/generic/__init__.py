"""The generic demo: its pipeline, its data and its set-up."""
