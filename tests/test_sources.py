"""A photo source, folder or list, yields every input exactly once with its identity, the
name a manifest records and the absolute path to open; a bad source raises naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from awkward_corpus import (
    LIMITS,
    expected_before_detection,
    make_awkward_corpus,
    make_photo_list,
    outcome_before_detection,
)

from facerec.data.images import ImageRejected, load_rgb
from facerec.data.sources import PhotoSourceError, iter_photos, photo_location


def touch(root: Path, *relatives: str) -> None:
    for relative in relatives:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")


def listed(source) -> list[tuple[str, str | None, str | None]]:
    return [(photo.path, photo.identity, photo.reject_reason) for photo in iter_photos(source)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward") / "photos"
    return root, make_awkward_corpus(root)


# Folders.

def test_identity_is_the_first_level_folder_and_files_come_folder_by_folder_in_sorted_order(tmp_path):
    touch(tmp_path, "b/2.jpg", "a/1.jpg", "a/deeper/3.jpg", "a/0.jpg", "loose.jpg", "c d/é 4.JPG")
    assert listed(tmp_path) == [
        ("loose.jpg", None, "no identity: not inside an identity folder"),
        ("a/0.jpg", "a", None), ("a/1.jpg", "a", None), ("a/deeper/3.jpg", "a", None),
        ("b/2.jpg", "b", None), ("c d/é 4.JPG", "c d", None),
    ]


def test_the_location_is_absolute_and_opens_the_file_the_path_names(tmp_path, monkeypatch):
    touch(tmp_path / "set", "a/1.jpg")
    monkeypatch.chdir(tmp_path)
    [photo] = iter_photos("set")  # a relative source
    assert photo.location == tmp_path / "set" / "a" / "1.jpg" and photo.location.is_absolute()
    assert photo_location("set", photo.path) == photo.location


def test_folders_named_like_files_are_walked_into(tmp_path):
    touch(tmp_path, "a/folder.jpg/inside.jpg", "photo.png/face.jpg")
    assert listed(tmp_path) == [("a/folder.jpg/inside.jpg", "a", None),
                                ("photo.png/face.jpg", "photo.png", None)]


@pytest.mark.timeout(10)
def test_linked_folders_are_followed_but_a_link_cycle_is_walked_once(tmp_path):
    touch(tmp_path, "a/1.jpg", "elsewhere/2.jpg")
    os.symlink(tmp_path / "elsewhere", tmp_path / "set_b")  # the tree's root is tmp_path
    os.symlink("..", tmp_path / "a" / "up")  # a/up/a/up/... would never end
    os.symlink(tmp_path / "a", tmp_path / "a" / "self")
    assert [path for path, _, _ in listed(tmp_path)] == ["a/1.jpg", "elsewhere/2.jpg", "set_b/2.jpg"]


def test_a_folder_is_streamed_rather_than_listed_up_front(tmp_path, monkeypatch):
    touch(tmp_path, "a/1.jpg", "b/2.jpg", "c/3.jpg")
    scanned = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: scanned.append(Path(path).name) or real_scandir(path))
    photos = iter_photos(tmp_path)
    assert next(photos).path == "a/1.jpg"
    assert scanned == [tmp_path.name, "a"]


def test_a_folder_that_cannot_be_listed_is_reported_in_place_of_its_files(tmp_path, monkeypatch):
    touch(tmp_path, "a/1.jpg", "b/secret/2.jpg", "c/3.jpg")
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert listed(tmp_path) == [
        ("a/1.jpg", "a", None),
        ("b/secret", "b", "unreadable folder: Permission denied; its files are not listed"),
        ("c/3.jpg", "c", None),
    ]


def test_a_name_that_is_not_utf8_is_rejected_with_a_printable_path(tmp_path):
    (tmp_path / "a").mkdir()
    open(os.path.join(os.fsencode(tmp_path / "a"), b"caf\xe9.jpg"), "wb").close()  # Latin-1 "café"
    [photo] = iter_photos(tmp_path)
    assert (photo.path, photo.identity) == ("a/caf\\xe9.jpg", "a")
    assert photo.reject_reason.startswith("bad file name: ")
    assert photo.path.encode("utf-8") and photo.location.exists()


def test_every_file_of_the_awkward_corpus_is_listed_once_with_its_identity(corpus):
    root, outcomes = corpus
    photos = list(iter_photos(root))
    assert sorted(photo.path for photo in photos) == sorted(outcomes)
    assert all(photo.identity == (photo.path.split("/")[0] if "/" in photo.path else None)
               and photo.location == root / photo.path for photo in photos)


# Lists.

@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_a_list_of_the_awkward_corpus_gives_each_row_its_expected_outcome(corpus, tmp_path, suffix, absolute):
    root, outcomes = corpus
    list_path = tmp_path / "lists" / f"photos{suffix}"  # relative rows climb out: ../../photos/...
    list_path.parent.mkdir()
    expected = make_photo_list(list_path, root, outcomes, absolute=absolute)
    photos = list(iter_photos(list_path))
    assert [photo.path for photo in photos] == sorted(expected)
    found = {photo.path: outcome_before_detection(photo) for photo in photos}
    assert found == expected_before_detection(expected)
    assert all(photo.location == photo_location(list_path, photo.path) for photo in photos)


def test_list_paths_are_resolved_against_the_list_folder_not_the_working_directory(tmp_path, monkeypatch):
    touch(tmp_path / "data", "a/1.jpg")
    (tmp_path / "data" / "list.csv").write_text("identity,path\nann,a/1.jpg\nbob,/elsewhere/2.jpg\n")
    monkeypatch.chdir(tmp_path)
    photos = list(iter_photos("data/list.csv"))
    assert [(p.path, p.identity, p.location) for p in photos] == [
        ("/elsewhere/2.jpg", "bob", Path("/elsewhere/2.jpg")),
        ("a/1.jpg", "ann", tmp_path / "data" / "a" / "1.jpg"),
    ]


def test_a_listed_file_that_does_not_exist_is_a_reject_when_loaded_not_a_listing_error(tmp_path):
    (tmp_path / "list.csv").write_text("path,identity\nnowhere.jpg,ann\n")
    [photo] = iter_photos(tmp_path / "list.csv")
    assert photo.reject_reason is None
    with pytest.raises(ImageRejected, match="^file not found: "):
        load_rgb(photo.location, **LIMITS)


def test_a_file_listed_again_keeps_its_first_row_and_later_ones_are_duplicates(tmp_path):
    (tmp_path / "list.csv").write_text("path,identity\nb.jpg,bob\na.jpg,ann\nb.jpg,ann\n./a.jpg,ann\n")
    assert listed(tmp_path / "list.csv") == [
        ("./a.jpg", "ann", "duplicate: same file as row 2 (a.jpg)"),
        ("a.jpg", "ann", None),
        ("b.jpg", "bob", None),
        ("b.jpg", "ann", "duplicate: same file as row 1 (b.jpg)"),
    ]


def test_identities_are_kept_as_written_and_an_empty_one_is_a_reject(tmp_path):
    # A spreadsheet's byte-order mark must not hide the first column's name.
    (tmp_path / "list.csv").write_text("\ufeffpath,identity,note\n1.jpg,007,x\n2.jpg,,y\n3.jpg,NA,z\n",
                                       encoding="utf-8")
    assert listed(tmp_path / "list.csv") == [
        ("1.jpg", "007", None),
        ("2.jpg", None, "no identity: row 2 of the list gives none"),
        ("3.jpg", "NA", None),
    ]


def test_a_parquet_list_may_hold_numeric_identities_and_nulls(tmp_path):
    table = pa.table({"path": ["b.jpg", "a.jpg"], "identity": pa.array([7, None], pa.int64())})
    pq.write_table(table, tmp_path / "list.parquet")
    assert listed(tmp_path / "list.parquet") == [
        ("a.jpg", None, "no identity: row 2 of the list gives none"), ("b.jpg", "7", None)]


@pytest.mark.parametrize("content,message", [
    ("path,person\na.jpg,ann\n", r"list\.csv: no column 'identity'; .* found \['path', 'person'\]"),
    ("file\na.jpg\n", r"list\.csv: no column 'path' or 'identity'"),
    ("path,identity\n,ann\n", r"list\.csv: row 1 has an empty path"),
    ("", r"list\.csv: cannot read the photo list: EmptyDataError"),
    (b"path,identity\n\xff\xfe.jpg,ann\n", r"list\.csv: cannot read the photo list: UnicodeDecodeError"),
])
def test_a_list_that_cannot_be_used_raises_naming_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "list.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(PhotoSourceError, match=message):
        iter_photos(path)  # raises at the call, before any photo is processed


def test_a_file_with_a_list_suffix_that_is_not_a_list_raises_naming_it(tmp_path):
    (tmp_path / "list.parquet").write_text("path,identity\n")
    with pytest.raises(PhotoSourceError, match=r"list\.parquet: cannot read the photo list: "):
        iter_photos(tmp_path / "list.parquet")


@pytest.mark.parametrize("name,message", [
    ("missing", "missing: not found"), ("missing.csv", "missing.csv: photo list not found"),
    ("photos.zip", "photos.zip: not a folder or a .csv/.parquet list"),
])
def test_a_source_that_is_neither_a_folder_nor_a_list_raises_naming_it(tmp_path, name, message):
    (tmp_path / "photos.zip").write_bytes(b"PK")
    with pytest.raises(PhotoSourceError, match=message):
        iter_photos(tmp_path / name)
