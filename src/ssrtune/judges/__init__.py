"""Judges: does a candidate answer do as well as the gold one? `base` (the interface and verdicts), `rules` (rule
judges), `llm` (a language model as judge), `config` (one settings class per kind) and `build` (config -> judge)."""
