"""The stages of a run, one object each (`base.Stage`): data, generate and restate (candidate sources), judge,
select, train, evaluate (with its suites: `suites`, `retention_stages`), report. Each declares the stages it needs,
the named parts its artifact is made from, the kind of that artifact and its path in the `RunLayout`; `base.Run`
runs a stage after the stages it needs, each once, and does all the caching."""
