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

from ssrtune import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of configs/quickstart.yaml")
    args = parser.parse_args()
    seconds: dict[str, float] = {}

    def timed(stage, function, *arguments):
        start = time.perf_counter()
        value = function(*arguments)
        seconds[stage] = time.perf_counter() - start
        return value

    with tempfile.TemporaryDirectory() as scratch:
        config = quickstart([*args.overrides, f"run_dir={scratch}"])
        records, _ = timed("data", pipeline.prepare_data, config)
        generations = timed("generate", pipeline.generate_stage, config, records)
        judgments = timed("judge", pipeline.judge_stage, config, records, generations)
        for method in ("sft", "ssr"):
            rows = timed(f"select_{method}", pipeline.select_stage, config, method, records, generations, judgments)
            timed(f"train_{method}", pipeline.train_stage, config, method, rows)
    sft = seconds["data"] + seconds["select_sft"] + seconds["train_sft"]
    ssr = seconds["data"] + seconds["generate"] + seconds["judge"] + seconds["select_ssr"] + seconds["train_ssr"]
    result = {"config": {"overrides": args.overrides, "n_train": config.data.n_train},
              "seconds": seconds, "sft_s": sft, "ssr_s": ssr, "extra_fraction": (ssr - sft) / sft}
    path = save("pipeline", result)
    stages = ", ".join(f"{stage} {s:.0f}s" for stage, s in seconds.items())
    print(f"pipeline: SSR {ssr:.0f}s vs SFT {sft:.0f}s, extra {result['extra_fraction']:.0%} of SFT (target <= 50%); "
          f"{stages} -> {path}")


if __name__ == "__main__":
    main()
