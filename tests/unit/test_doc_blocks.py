"""The docs harness's own rules (tests/e2e/doc_blocks.py): parsing, rewriting, and the output-shape check that
must fail on stale text while letting random numbers through."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.doc_blocks import blocks, documented_ports, mismatch, outputs, problems, rewrite, script, stand_ins

PAGE = """# A page

<!-- readme-test: run -->
```console
$ curl -sf localhost:8000/v1/models \\
       -H 'x: y'
{"models": [{"name": "capf", ...}]}
$ pose3d estimate long.mp4 -o /tmp/out.jsonl
Rwx9SitB: 100%|██████████| 40/40 [00:05<00:00,  7.82frame/s]
40 frames written to /tmp/out.jsonl
```

  <!-- readme-test: output (needs Docker) -->
  ```console
  $ docker compose up
  ```

```bash
make test
```

```python
print("not a command block")
```

```
$ an unmarked command in a fence without a language
```

```
output only, no prompt: not a command block
```
"""


def _page(tmp_path: Path) -> Path:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    return page


def test_blocks_are_found_with_their_markers_commands_and_shown_output(tmp_path: Path) -> None:
    run, docker, bare, prompt = blocks(_page(tmp_path))
    assert (run.kind, run.line, docker.kind, docker.why, bare.kind) == ("run", 4, "output", "(needs Docker)", None)
    assert run.commands[0].text == "curl -sf localhost:8000/v1/models \\\n-H 'x: y'"
    assert run.commands[0].shown == ('{"models": [{"name": "capf", ...}]}',)
    assert run.commands[1].shown[1] == "40 frames written to /tmp/out.jsonl"
    assert docker.commands[0].text == "docker compose up"
    assert problems(run) == problems(docker) == []
    assert "without a readme-test marker" in problems(bare)[0]
    assert "without a readme-test marker" in problems(prompt)[0]


def test_ports_and_tmp_are_rewritten_only_where_they_name_a_port_or_the_temp_dir(tmp_path: Path) -> None:
    text = "redis-server --port 6390 > /tmp/r.log & curl localhost:8000/x?n=8000 -o /tmp/a; PORT=8000 x /tmpfoo"
    assert documented_ports(text) == {6390, 8000}
    out = rewrite(text, {6390: 41001, 8000: 41002}, tmp_path)
    assert out == (
        f"redis-server --port 41001 > {tmp_path}/r.log & curl localhost:41002/x?n=8000 -o {tmp_path}/a; "
        "PORT=41002 x /tmpfoo"
    )


def test_the_script_splits_its_output_per_command(tmp_path: Path) -> None:
    run = blocks(_page(tmp_path))[0]
    text = script(run, {8000: 41002}, tmp_path)
    assert "localhost:41002/v1/models" in text
    assert f"-o {tmp_path}/out.jsonl" in text
    printed = "\n\x1epose3d-doc-command 0\n{}\n\x1epose3d-doc-command 1\nwrote\n"
    assert outputs(printed) == {0: "{}", 1: "wrote\n"}


def test_shapes_match_despite_random_numbers_and_ids() -> None:
    shown = ["Rwx9SitB: 100%|██████████| 40/40", "40 frames written to out.jsonl", "...", '{"job_id": "x", ...}']
    actual = 'AbC-dEf_: 10%|\rAbC-dEf_: 100%|\n40 frames written to o.jsonl\n{"job_id": "q", "state": "done"}\n'
    assert mismatch(shown, actual) is None
    assert mismatch(["pose3d_worker_up 1.0"], "pose3d_worker_up 0.0\n") is None
    assert mismatch(["364f7c23   active", "d8e7ae78   active"], "36417023 active\nabcdef12 active\n") is None
    metric = 'pose3d_key_requests_total{key="364f7c23",outcome="admitted"} 3.0'
    assert mismatch([metric], 'pose3d_key_requests_total{key="0a1b2c3d",outcome="admitted"} 1.0\n') is None
    assert mismatch([metric], 'pose3d_key_requests_total{key="0a1b2c3d",outcome="refused"} 1.0\n') is not None


def test_a_random_id_that_looks_like_a_name_still_matches_a_shown_id() -> None:
    """A job id's last 8 characters are random: upper-case letters and digits only (about 1% of ids) or lower-case
    ones look like a constant or a name, and failed the README's test at random (CI at da9bbc5)."""
    shown = ["ZH0IVVr-:   0%|          | 0/30", "30 frames written to long.jsonl"]
    for job in ("NFMRR8HL", "abc3def9", "ABCDEFGH"):
        assert mismatch(shown, f"{job}:   0%|\n{job}: 100%|\n30 frames written to long.jsonl\n") is None
    assert mismatch(shown, "30 frames written to long.jsonl\n") is not None
    assert mismatch(["ZH0IVVr-: 100%"], "SHORT: 100%\n") is not None
    assert mismatch(["JOB   STATE"], "NFMRR8HL   done\n") is not None  # a shown literal still wants itself


def test_stale_text_fails() -> None:
    assert mismatch(["wrote out.jsonl"], "40 frames written to out.jsonl\n") is not None
    assert mismatch(["404"], "200\n") is not None
    assert mismatch(['{"frames": [], "box_source": "x"}'], '{"frames": []}') is not None
    assert mismatch(["a", "b"], "b\na\n") is not None  # order matters
    assert mismatch(["stream x: 50 frames sent"], "") is not None


def test_a_server_listens_where_its_serve_or_gateway_line_says(tmp_path: Path) -> None:
    page = tmp_path / "servers.md"
    page.write_text(
        "<!-- readme-test: server -->\n```console\n$ pose3d serve --profile realtime --port 8001 --grpc-port 50052\n```\n"
        "<!-- readme-test: deployment -->\n```console\n$ redis-server --port 6390 &\n"
        "$ pose3d gateway --port 8000 --workers 127.0.0.1:50061 &\n```\n"
        "<!-- readme-test: server -->\n```console\n$ make serve\n```\n"
    )
    numbers = iter(range(41000, 41100))
    own, deployment, make = (stand_ins(block, lambda: next(numbers)) for block in blocks(page))
    assert (own.http, own.grpc) == (own.mapping[8001], own.mapping[50052])
    assert (deployment.http, deployment.grpc) == (deployment.mapping[8000], deployment.mapping[50051])
    assert set(deployment.mapping) == {6390, 8000, 50051, 50061}
    assert (make.http, make.grpc) == (make.mapping[8000], make.mapping[50051])
