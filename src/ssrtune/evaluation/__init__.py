"""Evaluation: the retention benchmarks and the KL from the base model, their data, the task metrics of judged answers,
and the intervals every number is reported with."""
