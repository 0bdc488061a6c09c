"""The API key file: salted hashes only, mode 0600, reload on change, `pose3d keys` round trip."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from service.cli import main
from service.security.keys import KeyStore, create_key, read_records, revoke_key, split_key


def test_file_keeps_only_salted_hashes_with_private_mode(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    record, key = create_key(file, "alice")
    _, other = create_key(file, "bob")
    text = file.read_text()
    assert key not in text
    assert key.split("_", 2)[2] not in text
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    records = read_records(file)
    assert len({r.salt for r in records.values()}) == 2
    assert split_key(key) == (record.key_id, key.split("_", 2)[2])
    store = KeyStore(file, check_interval_s=0.0)
    assert store.verify(key) == record.key_id
    assert store.verify(other) != record.key_id
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    for bad in ("", "p3d_", "p3d_abc_x", "Bearer " + key, key + "\n" * 300):
        assert store.verify(bad) is None, bad


def test_store_reloads_on_change_and_fails_closed(tmp_path: Path) -> None:
    file = tmp_path / "keys.json"
    store = KeyStore(file, check_interval_s=0.0)  # no file yet: no keys
    record, key = create_key(file, "alice")
    assert store.verify(key) == record.key_id
    revoke_key(file, record.key_id)
    assert store.verify(key) is None
    file.write_text("{not json")
    assert store.verify(key) is None
    assert store.key_ids() == []


def test_keys_command_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(tmp_path / "k.json")
    assert main(["keys", "create", "--name", "ci", "--file", file]) == 0
    out = capsys.readouterr().out
    key = out.split("store it now): ")[1].strip()
    key_id = split_key(key)
    assert key_id is not None
    assert main(["keys", "list", "--file", file]) == 0
    listing = capsys.readouterr().out
    assert f"{key_id[0]}   active" in listing
    assert key not in listing
    assert main(["keys", "revoke", key_id[0], "--file", file]) == 0
    assert json.loads(Path(file).read_text())["keys"][0]["revoked"] is True
    assert main(["keys", "revoke", "deadbeef", "--file", file]) == 2
