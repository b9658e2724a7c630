"""Every model call: one interface (`lm.LM`, shaped like lm-evaluation-harness's: greedy generation, log-likelihoods
of continuations, per-token log-probabilities) behind the engines registered in `engine.ENGINES`, each declaring what
it can do -- the built-in ones (`engines`) are transformers (`local`: CPU, one GPU, or one model sharded over several),
vllm (`vllm_engine`, on GPUs, run in a child process by `child`) and openai (`server`: any OpenAI-compatible server) --
built from the configuration by `factory.build_lm`. `generation` holds the resumable generation loop every stage
writes its answers with, `scoring` and `padding` the transformers back-end's batches, `harness`
lm-evaluation-harness on an engine's model. Stages call models only through these."""
