"""``pose3d keys create|list|revoke``: manage the API key file (gateways re-read it on change, no restart)."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

from service.security.keys import create_key, read_records, revoke_key

FILE_HELP = "key file (default: $POSE3D_SECURITY__API_KEYS_FILE, else ./api-keys.json)"


def _file(args: argparse.Namespace) -> Path:
    return Path(args.file or os.environ.get("POSE3D_SECURITY__API_KEYS_FILE") or "api-keys.json")


def _create(args: argparse.Namespace) -> int:
    record, key = create_key(_file(args), args.name)
    print(f"created key {record.key_id} ({record.name}) in {_file(args)}")
    print(f"API key (shown once, store it now): {key}")
    return 0


def _list(args: argparse.Namespace) -> int:
    records = read_records(_file(args))
    print(f"{'KEY ID':<10} {'STATUS':<8} {'CREATED (UTC)':<20} NAME")
    for r in sorted(records.values(), key=lambda r: r.created):
        created = datetime.datetime.fromtimestamp(r.created, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.key_id:<10} {'revoked' if r.revoked else 'active':<8} {created:<20} {r.name}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    try:
        record = revoke_key(_file(args), args.key_id)
    except KeyError:
        print(f"pose3d keys: error: no key {args.key_id!r} in {_file(args)} (see `pose3d keys list`)")
        return 2
    print(f"revoked key {record.key_id} ({record.name}); gateways refuse it within a second")
    return 0


def add_arguments(keys: argparse.ArgumentParser) -> None:
    """The ``pose3d keys`` flags (a command-table module: ``add_arguments`` / ``run``)."""
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="add a key and print it (once)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    listing = actions.add_parser("list", help="list key ids, status and names (never the keys)")
    revoke = actions.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", help="the id shown by create/list (8 hex characters)")
    for parser, func in ((create, _create), (listing, _list), (revoke, _revoke)):
        parser.add_argument("--file", default=None, help=FILE_HELP)
        parser.set_defaults(func=func)


def run(args: argparse.Namespace) -> int:
    return int(args.func(args))
