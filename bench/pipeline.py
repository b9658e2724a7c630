"""SSR's extra cost over SFT: wall time of each stage of the quickstart, in a scratch run directory.

An SFT model needs the data and one training run; an SSR model also needs the base model's own answers
(generate), their verdicts (judge), and trains on targets of other lengths. Evaluation is the same for both and
left out. Extra `key=value` arguments override the quickstart configuration, e.g. `data.n_train=64`.

    .venv/bin/python bench/pipeline.py [key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import quickstart, save

from ssrtune.stages.base import Run, trained_models
from ssrtune.stages.data import Data
from ssrtune.stages.generate import Generate
from ssrtune.stages.judge import Judge
from ssrtune.stages.select import Select
from ssrtune.stages.train import Train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of configs/quickstart.yaml")
    args = parser.parse_args()
    seconds: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as scratch:
        config = quickstart([*args.overrides, f"run_dir={scratch}", "methods=[sft, ssr]"])
        runner = Run(config)

        def timed(label, stage):  # the stages a stage needs have run before it, so each time is its own
            start = time.perf_counter()
            runner(stage)
            seconds[label] = time.perf_counter() - start

        for label, stage in [("data", Data()), ("generate", Generate()), ("judge", Judge())]:
            timed(label, stage)
        for model in trained_models(config):
            timed(f"select_{model.name}", Select(model.method))
            timed(f"train_{model.name}", Train(model))
    sft = seconds["data"] + seconds["select_sft"] + seconds["train_sft"]
    ssr = seconds["data"] + seconds["generate"] + seconds["judge"] + seconds["select_ssr"] + seconds["train_ssr"]
    result = {"config": {"overrides": args.overrides, "n_train": config.data.n_train},
              "seconds": seconds, "sft_s": sft, "ssr_s": ssr, "extra_fraction": (ssr - sft) / sft}
    path = save("pipeline", result)
    stages = ", ".join(f"{stage} {s:.0f}s" for stage, s in seconds.items())
    print(f"pipeline: SSR {ssr:.0f}s vs SFT {sft:.0f}s, extra {result['extra_fraction']:.0%} of SFT (target <= 30%); "
          f"{stages} -> {path}")


if __name__ == "__main__":
    main()
