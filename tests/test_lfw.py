"""The official LFW View 2 protocol file is read as published."""

from conftest import LFW
from facerec.data.lfw import read_pairs


def test_pairs_txt_has_ten_folds_of_300_matched_and_300_mismatched_pairs():
    pairs = read_pairs(LFW / "pairs.txt")
    assert len(pairs) == 6000
    per_fold = pairs.groupby("fold")["genuine"].agg(["sum", "size"])
    assert per_fold["size"].eq(600).all() and per_fold["sum"].eq(300).all()
    first = pairs.iloc[0]
    assert (first.path1, first.path2, first.genuine) == (
        "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True)
    images = set(pairs["path1"]) | set(pairs["path2"])
    assert all((LFW / "images" / path).is_file() for path in images)
