"""The reproduction's results ledger (issue 24): a long experiment's results kept in the repository, weightless and
without the datasets' text, committed unit by unit (`entries`: the shared own answers and verdicts, each CPU kind's
base model, one entry per model), restored into a run directory on any machine (`restore.restore_ledger`), where the
ordinary `Run` finds them current and reuses them, and continued under a time budget (`driver.reproduce`)."""
