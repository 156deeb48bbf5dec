"""hack/mkimage.py: directory trees in an image, reproducibly."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MTIME = 1_700_000_000


def _mkimage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hack_mkimage", ROOT / "hack" / "mkimage.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


mkimage = _mkimage()


FILES = {"usr/bin/tool": ("#!/usr/bin/tool\n", 0o755), "etc/secret": ("s3cret\n", 0o600)}
LINKS = {"usr/bin/alias": "tool", "etc/os-release": "../usr/lib/os-release"}
DIRS = {"var/empty": 0o700}


def _tree(root: Path, *, reverse: bool = False, mtime: int = 2_000_000_000) -> Path:
    """A small root filesystem, created in the given or the reverse order, every entry
    with the given mtime."""
    items: list[tuple[str, str, Any]] = [("dir", *d) for d in DIRS.items()]
    items += [("file", *f) for f in FILES.items()] + [("link", *link) for link in LINKS.items()]
    for kind, rel, value in reversed(items) if reverse else items:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            path.mkdir()
            path.chmod(value)
        elif kind == "file":
            path.write_text(value[0])
            path.chmod(value[1])
        else:
            path.symlink_to(value)
    for entry in [root, *root.rglob("*")]:
        os.utime(entry, (mtime, mtime), follow_symlinks=False)
    return root


def _build(tmp_path: Path, name: str, *args: str) -> tuple[str, bytes]:
    """Build an image archive; return its digest and bytes."""
    out = tmp_path / f"{name}.tar"
    argv = ["--name", "zdr.local/t:1", "--out", str(out), "--mtime", str(MTIME), "--quiet", *args]
    assert mkimage.main(argv) == 0
    archive = out.read_bytes()
    return _blobs(archive)["index.json"]["manifests"][0]["digest"], archive


def _blobs(archive: bytes) -> dict[str, Any]:
    """index.json, the manifest, the config and the layer (uncompressed) of an archive."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:

        def blob(digest: str) -> bytes:
            member = tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert member is not None
            return member.read()

        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.loads(index_file.read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        (layer,) = manifest["layers"]
        return {
            "index.json": index,
            "manifest": manifest,
            "config": config,
            "layer": gzip.decompress(blob(layer["digest"])),
        }


def _members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(_blobs(archive)["layer"])) as tar:
        return tar.getmembers()


def test_the_same_tree_gives_the_same_digest(tmp_path: Path) -> None:
    a = _tree(tmp_path / "a", mtime=2_000_000_000)
    b = _tree(tmp_path / "b", reverse=True, mtime=1_000_000_000)
    digest_a, archive_a = _build(tmp_path, "a", "--tree", f"{a}:/")
    digest_b, archive_b = _build(tmp_path, "b", "--tree", f"{b}:/")
    assert digest_a == digest_b
    assert archive_a == archive_b
    (a / "etc/secret").write_text("changed\n")
    assert _build(tmp_path, "c", "--tree", f"{a}:/")[0] != digest_a


def test_a_tree_keeps_symlinks_and_modes_with_fixed_owner_and_time(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    _, archive = _build(tmp_path, "img", "--tree", f"{root}:/")
    members = _members(archive)
    names = [m.name for m in members]
    assert names == sorted(names)
    by_name = {m.name: m for m in members}
    assert by_name["usr/bin/alias"].issym() and by_name["usr/bin/alias"].linkname == "tool"
    assert by_name["etc/os-release"].issym() and by_name["etc/os-release"].linkname == "../usr/lib/os-release"
    assert by_name["usr/bin/tool"].isfile() and by_name["usr/bin/tool"].mode == 0o755
    assert by_name["etc/secret"].mode == 0o600
    assert by_name["var/empty"].isdir() and by_name["var/empty"].mode == 0o700
    assert by_name["tmp"].mode == 0o1777
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in members)
    assert all(m.mtime == MTIME for m in members)


def test_a_tree_under_a_directory_gets_its_parents(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    _, archive = _build(tmp_path, "img", "--tree", f"{root / 'usr'}:/opt/app")
    by_name = {m.name: m for m in _members(archive)}
    assert by_name["opt"].isdir() and by_name["opt"].mode == 0o755
    assert by_name["opt/app"].isdir()
    assert by_name["opt/app/bin/alias"].linkname == "tool"


def test_dir_owner_and_json_argv_reach_the_image(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    _, archive = _build(
        tmp_path,
        "img",
        "--tree",
        f"{root}:/",
        "--dir",
        "/home/nonroot:0755:65532:65532",
        "--entrypoint",
        '["/usr/bin/python3.11", "-m"]',
        "--cmd",
        '["kopf", "run", "--standalone"]',
        "--user",
        "65532:65532",
        "--label",
        "org.opencontainers.image.version=1.2.3",
    )
    home = {m.name: m for m in _members(archive)}["home/nonroot"]
    assert (home.uid, home.gid, home.mode) == (65532, 65532, 0o755)
    config = _blobs(archive)["config"]["config"]
    assert config["Entrypoint"] == ["/usr/bin/python3.11", "-m"]
    assert config["Cmd"] == ["kopf", "run", "--standalone"]
    assert config["User"] == "65532:65532"
    assert config["Labels"] == {"org.opencontainers.image.version": "1.2.3"}


def test_a_tree_refuses_special_files_and_clashes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "root")
    with pytest.raises(SystemExit, match="given twice"):
        _build(tmp_path, "img", "--tree", f"{root}:/", "--file", f"{root / 'etc/secret'}:/etc/secret")
    with pytest.raises(SystemExit, match="not a directory"):
        _build(tmp_path, "img", "--tree", f"{root}:/", "--file", f"{root / 'etc/secret'}:/usr/bin/alias/x")
    os.mkfifo(root / "var/fifo")
    with pytest.raises(SystemExit, match="not a file, directory or symlink"):
        _build(tmp_path, "img", "--tree", f"{root}:/")
