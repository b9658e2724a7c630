"""What the built-in grounded-QA tasks ask of the model: their system prompt and the refusal sentence an unanswerable
question's gold answer is. Both tasks bring them in their records (the system turn), so the prompt belongs to the
task: a user's own data gets none of it."""

REFUSAL = "I cannot answer this question from the document."

# Short: it is part of every prompt of the task, in generation, training and evaluation (34 tokens with SmolLM2's
# template).
GROUNDED_QA_SYSTEM = f'Answer with a few words from the document. If it does not contain the answer, reply: "{REFUSAL}"'
