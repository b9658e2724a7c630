"""Left padding: the one batch layout of ssrtune's forward passes (generation, scoring and training).

Every row ends at the last position, so a batch needs logits only for its last few positions (`logits_to_keep`)
and generation continues every row from the same place. Position ids come from the mask, so padding shifts no
token's position.
"""

from __future__ import annotations

import torch


def left_pad(rows: list[list[int]], pad_value: int) -> torch.Tensor:
    """A [len(rows), longest] tensor of the rows, each right-aligned behind `pad_value`."""
    width = max(map(len, rows))
    out = torch.full((len(rows), width), pad_value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, width - len(row):] = torch.tensor(row, dtype=torch.long)
    return out


def left_padded_batch(rows: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask` and `position_ids` of left-padded token rows."""
    attention_mask = left_pad([[1] * len(row) for row in rows], 0)
    return {"input_ids": left_pad(rows, pad_token_id), "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0)}
