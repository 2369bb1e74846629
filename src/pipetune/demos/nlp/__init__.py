"""The nlp demo: its pipeline, its data and its set-up."""
