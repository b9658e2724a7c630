"""Every model call: one interface (`lm.LM`, shaped like lm-evaluation-harness's: greedy generation, log-likelihoods
of continuations, per-token log-probabilities) with three back-ends -- `local` (transformers: CPU, one GPU, or one model
sharded over several), `vllm_engine` (vLLM on GPUs, run in a child process by `child`) and `server` (any
OpenAI-compatible server) -- built from the configuration by `factory.build_lm`. `generation` holds the resumable
generation loop every stage writes its answers with, `scoring` and `padding` the transformers back-end's batches,
`harness` lm-evaluation-harness on a local model. Stages call models only through these."""
