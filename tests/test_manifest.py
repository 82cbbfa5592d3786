import json

import pytest

from benchpipe.errors import ManifestError
from benchpipe.package.manifest import verify_manifest, write_manifest


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("one")
    (tmp_path / "two.txt").write_text("two")
    write_manifest(tmp_path)
    return tmp_path


def test_roundtrip(tree):
    assert verify_manifest(tree) == 2
    assert set(json.loads((tree / "manifest.json").read_text())["files"]) == {"a/one.txt", "two.txt"}


def test_changed_file_is_named(tree):
    (tree / "a" / "one.txt").write_text("ONE")
    with pytest.raises(ManifestError, match=r"a/one.txt: sha256 .* manifest says"):
        verify_manifest(tree)


def test_missing_and_extra_files_are_named(tree):
    (tree / "two.txt").unlink()
    (tree / "three.txt").write_text("3")
    with pytest.raises(ManifestError) as err:
        verify_manifest(tree)
    assert "two.txt: missing" in str(err.value) and "three.txt: not in the manifest" in str(err.value)


def test_no_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json: cannot read"):
        verify_manifest(tmp_path)
