"""Model calls: `generation` (greedy answers, batched here, or through vLLM or an OpenAI-compatible server),
`scoring` (log-likelihoods and per-token log-probabilities of given continuations) and `padding` (the batch
layout both use). Stages call models only through these."""
