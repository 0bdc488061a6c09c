"""The overload bench's engine figures: mean batch, batch time, busy share and queue wait from two metric totals."""

from bench.overload_report import engine_figures


def test_engine_figures_show_a_batch_that_waited_behind_another_stage() -> None:
    before = {"detect.batches": 10.0, "detect.units": 80.0, "detect.busy_s": 3.0, "queue.waits": 100.0}
    after = {
        "detect.batches": 20.0,
        "detect.units": 170.0,
        "detect.busy_s": 5.5,
        "tokens.batches": 4.0,
        "tokens.units": 20.0,
        "tokens.busy_s": 2.0,
        "queue.waits": 300.0,
        "queue.wait_s": 30.0,
        "refused.expected-wait": 50.0,
        "seconds_per_work": 2.25,
    }
    figures = engine_figures(before, after, seconds=10.0)
    assert figures["detect_batch_mean"] == 9.0
    assert figures["detect_batch_ms"] == 250.0
    assert figures["tokens_batch_ms"] == 500.0  # its compute is short: it waited for the thread behind the detector
    assert figures["detect_busy_share"] == 0.25
    assert figures["queue_wait_ms_mean"] == 150.0
    assert figures["refused_expected-wait_per_s"] == 5.0
    assert figures["seconds_per_work_after"] == 2.25


def test_engine_figures_show_what_the_doors_model_expected_per_stage_and_in_all() -> None:
    before = {"detect.batches": 1.0, "detect.units": 1.0, "expected.detect.s": 1.0, "expected.detect.n": 2.0}
    after = {
        "detect.batches": 2.0,
        "detect.units": 2.0,
        "expected.detect.s": 13.0,  # 12 s over 10 requests: 1.2 s each
        "expected.detect.n": 12.0,
        "expected.lift.s": 0.5,  # 0.5 s over 10 requests: 50 ms each
        "expected.lift.n": 10.0,
        "expected.tokens.s": 0.0,  # asked of nobody in this phase: no figure
        "expected.tokens.n": 0.0,
    }
    figures = engine_figures(before, after, seconds=10.0)
    assert figures["detect_expected_wait_ms"] == 1200.0
    assert figures["lift_expected_wait_ms"] == 50.0
    assert "tokens_expected_wait_ms" not in figures
    assert figures["door_model_ms"] == 1250.0
