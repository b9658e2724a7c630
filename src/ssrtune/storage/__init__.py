"""The run directory on disk: its layout, crash-safe artifacts and their fingerprints, one writer at a time, stage
timings, files opened without following links, permissions."""
