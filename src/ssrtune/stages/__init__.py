"""The stages of a run, one object each (`base.Stage`): data, generate, judge, restate, select, train, evaluate,
report. Each names the stages it needs, the fingerprint of its inputs and settings, its artifact in the run
directory, and how it resumes; `base.Run` runs a stage after the stages it needs, each once."""
