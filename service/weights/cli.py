"""``pose3d weights list | fetch NAME... | add FILE [--name NAME] | verify [NAME...] | path NAME``.

The weights directory: ``--weights-dir``, else ``POSE3D_WEIGHTS_DIR`` (read through :class:`WeightsSettings` when
the command runs), else ``$XDG_CACHE_HOME/pose3d/weights``. Every failure prints one ``error: …`` line; exit
statuses as docs/weights.md says (:data:`USAGE_EXIT`, :data:`FAILED_EXIT`). Only ``add`` imports torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.weights.catalogue import Catalogue, Entry, load_catalogue
from service.weights.store import Installed, WeightsError, installed, not_installed_message, sha256_file, weights_dir

if TYPE_CHECKING:
    from rich.progress import Progress


class WeightsSettings(BaseSettings):
    """The one setting the ``weights`` commands read (checkpoint settings are not validated here)."""

    model_config = SettingsConfigDict(env_prefix="POSE3D_", extra="ignore")

    weights_dir: Path | None = Field(None, description="where checkpoints are installed")


def download_progress() -> Progress:
    """A download progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True))


def _root(args: argparse.Namespace) -> Path:
    configured = Path(args.weights_dir) if args.weights_dir else WeightsSettings().weights_dir
    return weights_dir(configured)


def _entry_lines(entry: Entry, root: Path) -> list[str]:
    found = installed(root, entry.name)
    state = "installed" if found else ("fetchable" if entry.fetchable else f"by hand ({entry.fetch})")
    feeds = entry.kind.value + (f" {entry.arch}" if entry.arch else "") + (f" {entry.family}" if entry.family else "")
    size = f"{entry.size} bytes" if entry.size else "size not published"
    lines = [f"{entry.name:<22} {feeds:<30} {state}", f"    {entry.title}"]
    lines.append(f"    file {entry.file} · {size} · {entry.checksum_text} · licence: {entry.licence}")
    lines.append(f"    {'url' if entry.fetchable else entry.fetch.value} {entry.url or '(no download published)'}")
    lines.append(f"    source {entry.source}")
    if found:
        lines.append(f"    at {found.path}")
    return lines


def _cmd_list(args: argparse.Namespace) -> int:
    catalogue, root = load_catalogue(), _root(args)
    print(f"weights directory: {root}")
    for entry in catalogue.entries:
        print("\n".join(_entry_lines(entry, root)))
    print("\nsets for `pose3d serve --weights SET`:")
    for s in catalogue.sets:
        print(f"{s.name:<22} {s.title}\n    {' + '.join(s.members)}")
    return 0


def _expand(catalogue: Catalogue, names: list[str]) -> list[Entry]:
    """Entry names and set names → the entries, in order, each once."""
    out: dict[str, Entry] = {}
    sets = {s.name: s for s in catalogue.sets}
    for name in names:
        for member in sets[name].members if name in sets else [name]:
            out.setdefault(member, catalogue.entry(member))
    return list(out.values())


def _cmd_fetch(args: argparse.Namespace) -> int:
    from service.weights.fetch import fetch_entry, new_client, unavailable_message

    root = _root(args)
    entries = _expand(load_catalogue(), args.names)
    manual = [e for e in entries if not e.fetchable and installed(root, e.name) is None]
    failed = 0
    with new_client() as client:
        for entry in (e for e in entries if e not in manual):
            found = installed(root, entry.name)
            if found is not None:
                print(f"{entry.name}: already installed at {found.path}")
                continue
            try:
                with download_progress() as progress:
                    done = fetch_entry(client, entry, root, progress)
            except WeightsError as e:
                failed += 1
                print(f"error: {e}", file=sys.stderr)
            else:
                print(f"{entry.name}: installed at {done.path} (sha256 {done.sha256})")
    for entry in manual:  # folders and unpublished files: one line each, the manual step (never a hang)
        print(f"error: {unavailable_message(entry)}", file=sys.stderr)
    return FAILED_EXIT if failed else USAGE_EXIT if manual else 0


def _verify_line(entry: Entry, found: Installed) -> tuple[bool, str]:
    """Whether ``found``'s file still is what was installed (and what its publisher published), in words."""
    digest = sha256_file(found.path)
    if digest != found.sha256:
        return False, f"{entry.name}: sha256 {digest} differs from {found.sha256} recorded when it was installed"
    published = entry.sha256 or entry.sha256_prefix
    if published and not entry.archive:
        if not digest.startswith(published):
            return False, f"{entry.name}: sha256 {digest} differs from the published {published}"
        return True, f"{entry.name}: ok, sha256 {digest[:16]}… matches the publisher's {published[:16]}"
    return True, (
        f"{entry.name}: ok, sha256 {digest[:16]}… as recorded when it was installed "
        "(trust on first use: the publisher gives no checksum of this file)"
    )


def _cmd_verify(args: argparse.Namespace) -> int:
    catalogue, root = load_catalogue(), _root(args)
    entries = _expand(catalogue, args.names) if args.names else list(catalogue.entries)
    found = [(e, f) for e in entries if (f := installed(root, e.name)) is not None]
    if args.names and len(found) < len(entries):
        missing = [e.name for e in entries if installed(root, e.name) is None]
        return _fail(not_installed_message(*missing))
    if not found:
        print(f"nothing installed in {root}")
        return 0
    bad = 0
    for entry, inst in found:
        ok, line = _verify_line(entry, inst)
        bad += not ok
        print(line if ok else f"error: {line}", file=sys.stdout if ok else sys.stderr)
    return FAILED_EXIT if bad else 0


def _cmd_add(args: argparse.Namespace) -> int:
    from service.weights.identify import add_file

    done, identity = add_file(load_catalogue(), Path(args.file), _root(args), args.name)
    print(f"{done.name}: {identity.detail}; installed at {done.path} (sha256 {done.sha256})")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    entry = load_catalogue().entry(args.name)  # WeightsError when it is not in the catalogue
    found = installed(_root(args), entry.name)
    if found is None:
        return _fail(not_installed_message(args.name))
    print(found.path)
    return 0


USAGE_EXIT = 2  # the user must change something: unknown name, not installed, a file `add` refuses, a manual step
FAILED_EXIT = 1  # failed on the way: a download, or an installed file that no longer matches its checksum


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return USAGE_EXIT


def add_arguments(weights: argparse.ArgumentParser) -> None:
    """The ``weights`` command (list / fetch / add / path), for the table in :mod:`service.cli`."""
    weights.description = (
        "The catalogue of published checkpoints the service can load, and a cache to install them in "
        "(--weights-dir, POSE3D_WEIGHTS_DIR, default $XDG_CACHE_HOME/pose3d/weights). Settings accept an "
        "installed entry's name wherever they take a checkpoint path."
    )
    weights.add_argument("--weights-dir", default=None, help="install directory (overrides POSE3D_WEIGHTS_DIR)")
    actions = weights.add_subparsers(dest="weights_command", required=True)
    listing = actions.add_parser("list", help="the catalogue, with sources, licences and what is installed")
    fetch = actions.add_parser("fetch", help="download, verify and install entries (or every entry of a set)")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="catalogue entry or set name")
    add = actions.add_parser("add", help="identify a checkpoint downloaded by hand and install it")
    add.add_argument("file", metavar="FILE")
    add.add_argument("--name", default=None, help="catalogue entry to install it as (when several fit)")
    verify = actions.add_parser(
        "verify",
        help="check installed files against the sha256 their publisher gives, else the one recorded at install",
    )
    verify.add_argument("names", nargs="*", metavar="NAME", help="entries or sets (default: every installed one)")
    path = actions.add_parser("path", help="print an installed entry's file")
    path.add_argument("name", metavar="NAME")
    commands = ((listing, _cmd_list), (fetch, _cmd_fetch), (add, _cmd_add), (verify, _cmd_verify), (path, _cmd_path))
    for parser, func in commands:
        parser.set_defaults(func=func)


def run(args: argparse.Namespace) -> int:
    """The subcommand's exit status; a WeightsError it raises (an unknown name, a file `add` refuses) is one
    ``error:`` line and :data:`USAGE_EXIT`."""
    try:
        return int(args.func(args))
    except WeightsError as e:
        return _fail(str(e))
