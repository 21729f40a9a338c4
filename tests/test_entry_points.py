"""Finding the installed plugins without importlib.metadata: the same answer as it gives."""

import os
import sys
import zipfile
from importlib.metadata import entry_points as installed

import pytest

from orchestra.plugin.entry_points import entry_points
from orchestra.testing import make_distribution


def described(points) -> list[tuple]:
    return [(p.name, p.value, p.dist.name, p.dist.version) for p in points]


def test_the_installed_plugins_are_what_importlib_metadata_finds():
    # the same plugins; the order within a directory is by name (the next test)
    assert sorted(described(entry_points("orchestra"))) == sorted(
        described(installed(group="orchestra"))
    )
    assert entry_points("orchestra")  # orchestra's own plugins at least


def test_within_a_directory_plugins_come_in_the_order_of_their_names(tmp_path, monkeypatch):
    # importlib.metadata takes the file system's order, which differs from one machine to
    # the next; orchestra's must not, or which of two plugins gets a name would too
    site = tmp_path / "site"
    for name in ("orchestra-zeta", "orchestra-alpha", "orchestra-mid"):
        make_distribution(site, name, {}, {name.split("-")[1]: "x"}, "1.0")
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: sorted(listdir(path), reverse=True))

    found = [entry.name for entry in entry_points("orchestra", [str(site)])]

    assert found == ["alpha", "mid", "zeta"]


def test_directories_on_the_path_in_order_first_distribution_wins(tmp_path, monkeypatch):
    one = make_distribution(tmp_path / "one", "orchestra-echo", {}, {"echo": "echo_one"}, "1.0")
    two = make_distribution(tmp_path / "two", "orchestra-echo", {}, {"echo": "echo_two"}, "2.0")
    other = make_distribution(
        tmp_path / "two", "orchestra-other", {}, {"other": "other.plugin:hooks"}, "3.1"
    )
    path = [str(one), str(two), str(tmp_path / "missing")]
    mine = described(entry_points("orchestra", path))
    assert mine == [
        ("echo", "echo_one", "orchestra-echo", "1.0"),
        ("other", "other.plugin:hooks", "orchestra-other", "3.1"),
    ]
    assert other == two
    monkeypatch.setattr(sys, "path", path)
    assert sorted(mine) == sorted(described(installed(group="orchestra")))


def test_other_groups_comments_and_egg_info_are_read_as_importlib_reads_them(tmp_path):
    site = tmp_path / "site"
    egg = site / "legacy-0.3-py3.11.egg-info"
    egg.mkdir(parents=True)
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 0.3\n\nbody\n")
    (egg / "entry_points.txt").write_text(
        "# a comment\n[console_scripts]\nlegacy = legacy:main\n\n"
        "[orchestra]\n; another comment\nlegacy = legacy_plugin [extra]\n"
    )
    bare = site / "bare-1.2.dist-info"  # no METADATA: named by its directory
    bare.mkdir()
    (bare / "entry_points.txt").write_text("[orchestra]\nbare=bare_plugin:hooks\n")
    found = described(entry_points("orchestra", [str(site)]))
    assert sorted(found) == [
        ("bare", "bare_plugin:hooks", "bare", "1.2"),
        ("legacy", "legacy_plugin [extra]", "legacy", "0.3"),
    ]


def test_an_entry_point_loads_the_object_it_names(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site",
        "orchestra-named",
        {"named_plugin": "class Hooks:\n    class Inner:\n        pass\n"},
        {"whole": "named_plugin", "inner": "named_plugin:Hooks.Inner"},
    )
    monkeypatch.syspath_prepend(str(site))
    points = {p.name: p for p in entry_points("orchestra", [str(site)])}
    module = points["whole"].load()
    assert module.__name__ == "named_plugin"
    assert points["inner"].load() is module.Hooks.Inner


def test_a_zip_on_the_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped-1.0.dist-info/METADATA", "Name: zipped\nVersion: 1.0\n")
        zipped.writestr("zipped-1.0.dist-info/entry_points.txt", "[orchestra]\nzipped = zp\n")
    monkeypatch.setattr(sys, "path", [str(archive), *sys.path])
    found = described(entry_points("orchestra"))
    assert ("zipped", "zp", "zipped", "1.0") in found
    assert found == described(installed(group="orchestra"))


@pytest.mark.parametrize("value", ["", "not a value!", "module:"])
def test_a_malformed_value_fails_to_load_with_its_text(value, tmp_path):
    site = tmp_path / "site"
    info = site / "bad-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text(f"[orchestra]\nbad = {value}\n")
    (point,) = entry_points("orchestra", [str(site)])
    with pytest.raises(ValueError, match="not an entry point"):
        point.load()


def test_an_egg_directory_on_the_path_is_left_to_importlib_metadata(tmp_path, monkeypatch):
    egg = tmp_path / "eggy-1.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "PKG-INFO").write_text("Name: eggy\nVersion: 1.0\n")
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[orchestra]\neggy = eggy_plugin\n")
    monkeypatch.setattr(sys, "path", [str(egg), *sys.path])
    found = described(entry_points("orchestra"))
    assert found == described(installed(group="orchestra"))


def test_an_undecodable_entry_points_file_of_another_package_stops_nothing(tmp_path):
    site = make_distribution(tmp_path / "site", "orchestra-fine", {}, {"fine": "fine_plugin"})
    damaged = site / "damaged-1.0.dist-info"
    damaged.mkdir()
    (damaged / "entry_points.txt").write_bytes(b"[console_scripts]\nx = \xff\xfe:main\n")
    assert described(entry_points("orchestra", [str(site)])) == [
        ("fine", "fine_plugin", "orchestra-fine", "1.0")
    ]
