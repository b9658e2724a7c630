"""ssrtune: fine-tune language models with Selective Self-Rehearsal (arXiv 2409.04787).

From Python (docs/USAGE.md: Python API): `ssrtune.run(config)`, `ssrtune.load_config(path, overrides)`,
`ssrtune.Pipeline(config)` for one stage at a time, `ssrtune.judges.build(...)` for a judge on its own. The names
are imported on first use, so `import ssrtune` stays cheap.
"""

from __future__ import annotations

import ssrtune.lazy as _lazy

if _lazy.TYPE_CHECKING:
    from ssrtune import judges
    from ssrtune.api import Pipeline, run
    from ssrtune.config.errors import ConfigError
    from ssrtune.config.run import RunConfig, load_config
    from ssrtune.data.schema import DataError
    from ssrtune.storage.artifacts import StaleArtifactError

__version__ = "0.1.0"
__all__ = ["run", "Pipeline", "load_config", "RunConfig", "judges", "ConfigError", "DataError", "StaleArtifactError"]
__getattr__, __dir__ = _lazy.lazy_exports(__name__, {
    "run": "ssrtune.api", "Pipeline": "ssrtune.api", "load_config": "ssrtune.config.run", "RunConfig": "ssrtune.config.run",
    "judges": "ssrtune.judges", "ConfigError": "ssrtune.config.errors", "DataError": "ssrtune.data.schema",
    "StaleArtifactError": "ssrtune.storage.artifacts"})
