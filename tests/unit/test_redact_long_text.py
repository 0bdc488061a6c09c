"""``redact`` is linear in its text: a 200 000-character key name in a 422's detail (before the detail was bounded)
held the event loop for minutes, the scheme pattern tried at every letter of a run and scanning the run each time.
It still redacts as before, scheme and all (a scheme begins at the first letter of its run)."""

from __future__ import annotations

import threading

import pytest

from service.redaction import redact


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("rediss://:RedisPw9@x@127.0.0.1:6391/0", "rediss://***@127.0.0.1:6391/0"),
        ("12redis://u:p@h/0", "12redis://***@h/0"),
        ("x://u@y://v@h", "x://***@y://***@h"),
        ("see REDIS://a:b@c:1/0 and http://x@y", "see REDIS://***@c:1/0 and http://***@y"),
        ("no credentials: https://example.com/a@b", "no credentials: https://example.com/a@b"),
    ],
)
def test_credentials_are_redacted_as_before(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_a_long_run_of_letters_is_redacted_in_one_pass() -> None:
    """2 000 000 letters (and runs of 1000 between spaces): milliseconds now; the quadratic scan took hours. The
    bound only keeps a regression from hanging the suite."""
    texts = ["k" * 2_000_000, ("k" * 1000 + " ") * 2000, "1" * 1_000_000 + "redis://u:p@h"]
    results: list[str] = []
    worker = threading.Thread(target=lambda: results.extend(redact(t) for t in texts), daemon=True)
    worker.start()
    worker.join(120)
    assert len(results) == 3, "redact did not finish"
    assert results[:2] == texts[:2]
    assert results[2].endswith("redis://***@h")
