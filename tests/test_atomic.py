import pytest

from benchpipe.contracts.atomic import atomic_dir, atomic_file


def test_dir_appears_only_on_success(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(final) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "done.txt").write_text("done")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (final / "done.txt").read_text() == "done"


def test_rerun_replaces_and_cleans_stale_partials(tmp_path):
    final = tmp_path / "out"
    stale = tmp_path / ".out.partial-99999"
    stale.mkdir()
    (stale / "junk").write_text("left by a killed job")
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(final) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in final.iterdir()) == ["b"]


def test_file_not_written_on_error(tmp_path):
    final = tmp_path / "x.json"
    with pytest.raises(ValueError):
        with atomic_file(final) as f:
            f.write("{")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
