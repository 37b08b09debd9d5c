"""A dataset with train and test split folders but no validation folder: the test clips are never trained on."""

from __future__ import annotations

from dataclasses import dataclass

from usseg_models.training.common import resolve_datasets


@dataclass
class _Rec:
    id: str
    subject: str
    split: str | None


def test_holdout_leaves_test_split_out():
    records = [_Rec(f"Train/{i}", f"s{i}", "Train") for i in range(6)] + [
        _Rec(f"Test/{i}", f"t{i}", "Test") for i in range(3)]
    train, val, info = resolve_datasets("unused", lambda _: records, lambda recs, aug: list(recs), 0.34,
                                        by_subject=True, seed=0)
    used = {r.id for r in train} | {r.id for r in val}
    assert used == {r.id for r in records if r.split == "Train"}
    assert train and val and not ({r.id for r in train} & {r.id for r in val})
    assert "3 item(s) of test split folders left out" in info["split"]
