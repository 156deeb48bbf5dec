#!/usr/bin/env python3
"""Build a single-layer OCI image archive from files and directory trees.

The archive is an OCI image layout in a tar (oci-layout, index.json,
blobs/sha256/...), the form `ctr -n k8s.io images import FILE.tar` reads.
The index entry carries the full name as io.containerd.image.name (the name
containerd's importer registers) and the tag as org.opencontainers.image.ref.name.

Output is reproducible: fixed timestamps, owners 0:0 (unless a --dir names
another), sorted entries, gzip without name or time, so the same inputs give
the same image digest. A --tree keeps the modes and symlinks it finds; hard
links become separate regular files; anything else (sockets, devices) is refused.

Examples:
  python3 hack/mkimage.py --name zdr.local/testapp:dev --out testapp.tar \\
      --file build/testapp:/testapp --entrypoint /testapp --env VERSION=dev --port 8080
  python3 hack/mkimage.py --name zdr.local/app:1 --out app.tar --tree rootfs:/ \\
      --entrypoint '["/usr/bin/python3.11", "-m"]' --cmd '["app"]' --user 65532:65532

Prints the image (manifest) digest on stdout.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class FileSpec:
    src: Path
    dest: PurePosixPath
    mode: int


@dataclass(frozen=True)
class TreeSpec:
    src: Path
    dest: PurePosixPath


@dataclass(frozen=True)
class Entry:
    """One member of the layer: a directory, a regular file (content read from
    src when the layer is written) or a symlink."""

    kind: bytes
    mode: int
    src: Path | None = None
    linkname: str = ""
    uid: int = 0
    gid: int = 0


def parse_file(arg: str) -> FileSpec:
    """SRC:DEST[:MODE], MODE octal; default 0755 for executables, else 0644."""
    parts = arg.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"--file {arg!r}: want SRC:DEST or SRC:DEST:MODE")
    src = Path(parts[0])
    dest = PurePosixPath(parts[1])
    if not dest.is_absolute() or ".." in dest.parts or dest == PurePosixPath("/"):
        raise argparse.ArgumentTypeError(f"--file {arg!r}: DEST must be an absolute file path")
    if not src.is_file():
        raise argparse.ArgumentTypeError(f"--file {arg!r}: {src} is not a file")
    if len(parts) == 3:
        try:
            mode = int(parts[2], 8)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--file {arg!r}: MODE must be octal, e.g. 0755") from None
    else:
        mode = 0o755 if os.access(src, os.X_OK) else 0o644
    return FileSpec(src, dest, mode)


def parse_tree(arg: str) -> TreeSpec:
    """SRCDIR:DEST, DEST an absolute directory (/ for the image's root)."""
    src, sep, dest = arg.rpartition(":")
    if not sep or not src or not dest:
        raise argparse.ArgumentTypeError(f"--tree {arg!r}: want SRCDIR:DEST")
    dest_path = PurePosixPath(dest)
    if not dest_path.is_absolute() or ".." in dest_path.parts:
        raise argparse.ArgumentTypeError(f"--tree {arg!r}: DEST must be an absolute directory path")
    if not Path(src).is_dir():
        raise argparse.ArgumentTypeError(f"--tree {arg!r}: {src} is not a directory")
    return TreeSpec(Path(src), dest_path)


def parse_env(arg: str) -> str:
    key, sep, _ = arg.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--env {arg!r}: want KEY=VALUE")
    return arg


def parse_port(arg: str) -> str:
    port, _, proto = arg.partition("/")
    proto = proto or "tcp"
    if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp", "sctp"):
        raise argparse.ArgumentTypeError(f"--port {arg!r}: want PORT or PORT/PROTO")
    return f"{int(port)}/{proto}"


def split_name(name: str) -> tuple[str, str]:
    """Return (repository, tag) of NAME[:TAG]; the tag defaults to latest."""
    last = name.rsplit("/", 1)[-1]
    if "@" in name:
        raise SystemExit(f"mkimage: --name {name!r}: give a tag, not a digest")
    if ":" in last:
        repo, tag = name.rsplit(":", 1)
    else:
        repo, tag = name, "latest"
    if not repo or not tag:
        raise SystemExit(f"mkimage: --name {name!r}: want REPOSITORY[:TAG]")
    return repo, tag


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_info(
    name: str,
    kind: bytes,
    mode: int,
    mtime: int,
    size: int = 0,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = mtime
    info.size = size
    info.linkname = linkname
    return info


def key_of(path: PurePosixPath) -> str:
    """The layer member name of an absolute image path."""
    return str(path).lstrip("/")


def tree_entries(tree: TreeSpec) -> dict[str, Entry]:
    """Every directory, file and symlink under tree.src, keyed by its place in
    the image. DEST itself gets the mode of SRCDIR unless it is the root."""
    found: dict[str, Entry] = {}
    if tree.dest != PurePosixPath("/"):
        found[key_of(tree.dest)] = Entry(tarfile.DIRTYPE, stat.S_IMODE(tree.src.stat().st_mode))
    pending = [tree.src]
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as listing:
            for item in listing:
                path = Path(item.path)
                key = key_of(tree.dest / path.relative_to(tree.src).as_posix())
                st = item.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    found[key] = Entry(tarfile.SYMTYPE, 0o777, linkname=os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    found[key] = Entry(tarfile.DIRTYPE, stat.S_IMODE(st.st_mode))
                    pending.append(path)
                elif stat.S_ISREG(st.st_mode):
                    found[key] = Entry(tarfile.REGTYPE, stat.S_IMODE(st.st_mode), src=path)
                else:
                    raise SystemExit(f"mkimage: --tree: {path} is not a file, directory or symlink")
    return found


def collect_entries(trees: list[TreeSpec], dirs: dict[str, Entry], files: list[FileSpec]) -> dict[str, Entry]:
    """Trees first (a directory may come from several, with one mode), then the
    explicit directories (their mode and owner win), then the files; parents
    that nothing names are 0755 directories."""
    entries: dict[str, Entry] = {}
    for tree in trees:
        for key, entry in tree_entries(tree).items():
            known = entries.get(key)
            if known is not None and not (
                known.kind == entry.kind == tarfile.DIRTYPE and known.mode == entry.mode
            ):
                raise SystemExit(f"mkimage: /{key} comes from more than one --tree")
            entries[key] = entry
    for key, entry in dirs.items():
        known = entries.get(key)
        if known is not None and known.kind != tarfile.DIRTYPE:
            raise SystemExit(f"mkimage: --dir /{key} is not a directory in a --tree")
        entries[key] = entry
    for f in files:
        key = key_of(f.dest)
        known = entries.get(key)
        if known is not None and known.kind == tarfile.DIRTYPE:
            raise SystemExit(f"mkimage: {f.dest} is both a file and a directory")
        if known is not None:
            raise SystemExit(f"mkimage: {f.dest} given twice")
        entries[key] = Entry(tarfile.REGTYPE, f.mode, src=f.src)
    for key in list(entries):
        for parent in PurePosixPath("/" + key).parents:
            if parent == PurePosixPath("/"):
                continue
            known = entries.setdefault(key_of(parent), Entry(tarfile.DIRTYPE, 0o755))
            if known.kind != tarfile.DIRTYPE:
                raise SystemExit(f"mkimage: {parent} is a parent of /{key} but not a directory")
    return entries


def build_layer(entries: dict[str, Entry], mtime: int) -> bytes:
    """The uncompressed layer tar, members in sorted order (a parent sorts
    before its children), every one with the same mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key in sorted(entries):
            e = entries[key]
            if e.kind == tarfile.DIRTYPE:
                tar.addfile(tar_info(key + "/", e.kind, e.mode, mtime, uid=e.uid, gid=e.gid))
            elif e.kind == tarfile.SYMTYPE:
                tar.addfile(tar_info(key, e.kind, e.mode, mtime, linkname=e.linkname, uid=e.uid, gid=e.gid))
            else:
                assert e.src is not None
                data = e.src.read_bytes()
                info = tar_info(key, e.kind, e.mode, mtime, len(data), uid=e.uid, gid=e.gid)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def parse_dir(arg: str) -> tuple[str, Entry]:
    """DIR[:MODE[:UID:GID]], MODE octal (default 0755), owner default 0:0."""
    parts = arg.split(":")
    key = key_of(PurePosixPath(parts[0]))
    if not key or ".." in key.split("/") or len(parts) not in (1, 2, 4):
        raise SystemExit(f"mkimage: --dir {arg!r}: want an absolute DIR[:MODE[:UID:GID]]")
    try:
        mode = int(parts[1], 8) if len(parts) > 1 and parts[1] else 0o755
        uid, gid = (int(parts[2]), int(parts[3])) if len(parts) == 4 else (0, 0)
    except ValueError:
        raise SystemExit(f"mkimage: --dir {arg!r}: MODE is octal, UID and GID are numbers") from None
    return key, Entry(tarfile.DIRTYPE, mode, uid=uid, gid=gid)


def argv_of(flag: str, values: list[str]) -> list[str]:
    """ARG... as given, or one JSON array of strings (for arguments that start with -)."""
    if len(values) == 1 and values[0].startswith("["):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError as e:
            raise SystemExit(f"mkimage: {flag} {values[0]!r}: {e}") from None
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            raise SystemExit(f"mkimage: {flag} {values[0]!r}: want a JSON array of strings")
        return parsed
    return values


def build_archive(args: argparse.Namespace) -> tuple[bytes, str, int]:
    """Return the archive bytes, the manifest digest and the uncompressed layer size."""
    repo, tag = split_name(args.name)
    full_name = f"{repo}:{tag}"
    mtime = args.mtime
    created = datetime.fromtimestamp(mtime, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    dirs = {"tmp": Entry(tarfile.DIRTYPE, 0o1777)}
    dirs.update(parse_dir(d) for d in args.dir)

    layer_tar = build_layer(collect_entries(args.tree, dirs, args.file), mtime)
    layer_blob = layer_tar if args.no_gzip else gzip_bytes(layer_tar)
    layer_media = MEDIA_LAYER_TAR if args.no_gzip else MEDIA_LAYER_GZIP

    env = list(args.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    image_config: dict[str, object] = {"Env": env, "WorkingDir": args.workdir}
    if args.entrypoint:
        image_config["Entrypoint"] = argv_of("--entrypoint", args.entrypoint)
    if args.cmd:
        image_config["Cmd"] = argv_of("--cmd", args.cmd)
    if args.port:
        image_config["ExposedPorts"] = {p: {} for p in sorted(set(args.port))}
    if args.user:
        image_config["User"] = args.user
    if args.stop_signal:
        image_config["StopSignal"] = args.stop_signal
    labels = dict(kv.split("=", 1) for kv in args.label)
    if labels:
        image_config["Labels"] = labels

    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer_tar)]},
        "history": [{"created": created, "created_by": "hack/mkimage.py"}],
    }
    config_blob = canonical_json(config)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, config_blob),
        "layers": [descriptor(layer_media, layer_blob)],
    }
    manifest_blob = canonical_json(manifest)
    manifest_digest = sha256(manifest_blob)

    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            descriptor(
                MEDIA_MANIFEST,
                manifest_blob,
                platform={"architecture": "amd64", "os": "linux"},
                annotations={
                    "io.containerd.image.name": full_name,
                    "org.opencontainers.image.ref.name": tag,
                },
            )
        ],
    }
    layout = canonical_json({"imageLayoutVersion": "1.0.0"})

    blobs = {}
    for blob in (config_blob, layer_blob, manifest_blob):
        blobs[sha256(blob).split(":", 1)[1]] = blob

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            tar.addfile(tar_info(name, tarfile.REGTYPE, 0o644, mtime, len(data)), io.BytesIO(data))

        add("oci-layout", layout)
        tar.addfile(tar_info("blobs/", tarfile.DIRTYPE, 0o755, mtime))
        tar.addfile(tar_info("blobs/sha256/", tarfile.DIRTYPE, 0o755, mtime))
        for hexdigest in sorted(blobs):
            add(f"blobs/sha256/{hexdigest}", blobs[hexdigest])
        add("index.json", canonical_json(index))
    return out.getvalue(), manifest_digest, len(layer_tar)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Build a single-layer OCI image archive (linux/amd64) from files and trees.",
        epilog="Prints the manifest digest (the image digest containerd shows) on stdout.",
    )
    p.add_argument("--name", required=True, help="image name, REPOSITORY[:TAG], e.g. zdr.local/testapp:dev")
    p.add_argument("--out", required=True, type=Path, help="archive to write")
    p.add_argument(
        "--file",
        action="append",
        type=parse_file,
        default=[],
        metavar="SRC:DEST[:MODE]",
        help="copy SRC to DEST in the image (repeatable)",
    )
    p.add_argument(
        "--tree",
        action="append",
        type=parse_tree,
        default=[],
        metavar="SRCDIR:DEST",
        help="copy the directory tree SRCDIR to DEST in the image, keeping modes and symlinks (repeatable)",
    )
    p.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="DIR[:MODE[:UID:GID]]",
        help="directory with this mode and owner (repeatable); /tmp (1777) is always there",
    )
    p.add_argument(
        "--entrypoint", nargs="+", default=[], metavar="ARG", help="entrypoint argv, or one JSON array"
    )
    p.add_argument("--cmd", nargs="+", default=[], metavar="ARG", help="default arguments, or one JSON array")
    p.add_argument(
        "--env",
        action="append",
        type=parse_env,
        default=[],
        metavar="K=V",
        help="environment variable (repeatable); PATH gets a default",
    )
    p.add_argument(
        "--port",
        action="append",
        type=parse_port,
        default=[],
        metavar="PORT[/PROTO]",
        help="exposed port (repeatable)",
    )
    p.add_argument("--user", default="", help="user to run as, e.g. 65532:65532 (default: root)")
    p.add_argument("--workdir", default="/", help="working directory (default /)")
    p.add_argument("--stop-signal", default="", help="signal that stops the container, e.g. SIGTERM")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="image label (repeatable)")
    p.add_argument("--no-gzip", action="store_true", help="store the layer uncompressed")
    p.add_argument("--quiet", action="store_true", help="print only the digest")
    p.add_argument(
        "--mtime",
        type=int,
        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        help="timestamp of every entry and of the image (default $SOURCE_DATE_EPOCH or 0)",
    )
    args = p.parse_args(argv)
    if not args.file and not args.tree:
        p.error("give at least one --file or --tree")
    for kv in args.label:
        if "=" not in kv:
            p.error(f"--label {kv!r}: want KEY=VALUE")

    data, digest, layer_size = build_archive(args)
    out: Path = args.out
    if out.is_file() and out.stat().st_size == len(data) and out.read_bytes() == data:
        if not args.quiet:
            print(f"mkimage: {out} unchanged ({args.name}, {digest})", file=sys.stderr)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, out)
        if not args.quiet:
            print(
                f"mkimage: wrote {out} ({args.name}, {len(data)} bytes, layer {layer_size} bytes "
                f"uncompressed, {digest})",
                file=sys.stderr,
            )
    print(digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
