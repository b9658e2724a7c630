"""Task data from the Hugging Face Hub: a data file setting `hf://ORG/NAME[@REVISION][/CONFIG][:SPLIT]` is read with
`datasets.load_dataset`, which needs network at run time (or a copy in the datasets cache, with
HF_DATASETS_OFFLINE=1). A local folder at the path ORG/NAME is read instead, as `load_dataset` does. `@REVISION` (a
tag, a branch or a commit) pins the data: without it, the default branch is read, whatever it holds that day."""

from __future__ import annotations

import re

from ssrtune.data.schema import DataError

PREFIX = "hf://"
_SPEC = re.compile(r"(?P<name>[\w.-]+/[\w.-]+)(?:@(?P<revision>[\w.-]+))?(?:/(?P<config>[\w.-]+))?"
                   r"(?::(?P<split>[\w.\[\]:%+-]+))?")


def is_hub(source: object) -> bool:
    return isinstance(source, str) and source.startswith(PREFIX)


def parse(source: str) -> tuple[str, str | None, str | None, str | None]:
    """(ORG/NAME, revision, config, split; each None when not given) of `hf://ORG/NAME[@REVISION][/CONFIG][:SPLIT]`."""
    match = _SPEC.fullmatch(source[len(PREFIX):])
    if match is None:
        raise DataError(source, None, None, "expected hf://ORG/NAME, hf://ORG/NAME:SPLIT or "
                                            "hf://ORG/NAME@REVISION/CONFIG:SPLIT")
    return match["name"], match["revision"], match["config"], match["split"]


def hub_dataset(source: str):
    """The one split of `source` as a `datasets.Dataset`; a failed load is one `DataError` line naming it. Loaded
    anew on each call (from the datasets cache once downloaded), so that a new revision is seen."""
    from datasets import DatasetDict, load_dataset

    name, revision, config, split = parse(source)
    try:
        dataset = load_dataset(name, config, split=split, revision=revision)
    except Exception as err:  # offline, unknown dataset or split, no access: whatever the Hub or the cache says
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        offline = ("; hf:// data is downloaded at run time: it needs network, or the dataset already in the datasets "
                   "cache (read from there with HF_DATASETS_OFFLINE=1)") if isinstance(err, ConnectionError) else ""
        raise DataError(source, None, None, f"cannot load the Hugging Face dataset {name!r} ({reason}){offline}"
                        ) from None
    if isinstance(dataset, DatasetDict):
        if len(dataset) != 1:
            raise DataError(source, None, None, f"holds splits {list(dataset)}; name one: {PREFIX}{name}:SPLIT")
        dataset = next(iter(dataset.values()))
    return dataset


def hub_fingerprint(source: str) -> str:
    """The dataset's own fingerprint (`datasets` derives it from the resolved Hub revision or, for local files, their
    modification times, with the config and split), so that a new revision of the data is read again."""
    return hub_dataset(source)._fingerprint  # `datasets` exposes it only under this name
