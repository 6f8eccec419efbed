"""The write–audit–regenerate loop: what a retry changes, when it stops, what it announces."""

import threading

import pytest

from pipeline.drafting.loop import RETRY_TEMPERATURE, Budget, parse_json, regenerate


def scripted(*results):
    """A `write` that returns `results` in turn and records each (attempt, request) it got."""
    calls, left = [], list(results)

    def write(attempt, request):
        calls.append((attempt, request))
        return left.pop(0)

    return write, calls


def test_a_clean_first_write_is_the_only_call():
    write, calls = scripted([])
    regenerate(write, seed=5, extra=1)
    assert calls == [(0, {})]


def test_a_regeneration_changes_the_seed_and_warms_the_temperature_then_stops_at_its_bound():
    write, calls = scripted(["repeat"], ["repeat"], ["repeat"])
    regenerate(write, seed=100, extra=2)
    assert calls == [(0, {}), (1, {"seed": 101, "temperature": RETRY_TEMPERATURE}),
                     (2, {"seed": 102, "temperature": RETRY_TEMPERATURE})]
    assert len({str(request) for _, request in calls}) == len(calls)  # never the same request twice


def test_an_unusable_reply_is_retried_unannounced_and_a_failing_one_announced_only_when_a_retry_follows():
    announced = []
    write, calls = scripted(None, {"联系0": ["effect"]})
    regenerate(write, seed=0, extra=1, announce=announced.append)
    assert len(calls) == 2 and announced == []  # None: no announcement; the last failure: no retry follows
    write, calls = scripted({"联系0": ["effect"]}, [])
    regenerate(write, seed=0, extra=1, announce=announced.append)
    assert len(calls) == 2 and announced == [{"联系0": ["effect"]}]


def test_a_shared_budget_caps_the_regenerations_of_a_group():
    budget, announced, calls = Budget(2), [], []
    for piece in range(3):
        write, mine = scripted(["format"], ["format"])
        regenerate(write, seed=10 * piece, extra=1, budget=budget, announce=announced.append)
        calls += mine
    assert [a for a, _ in calls] == [0, 1, 0, 1, 0] and budget.left == 0 and len(announced) == 2


def test_a_cancel_stops_before_the_next_regeneration():
    cancel = threading.Event()
    calls = []

    def write(attempt, request):
        calls.append(attempt)
        cancel.set()
        return ["repeat"]

    regenerate(write, seed=0, extra=3, cancel=cancel)
    assert calls == [0]


@pytest.mark.parametrize("text, expected", [('好的：```json\n{"a": 1}\n```', {"a": 1}), ('{"联系": []} 完', {"联系": []})])
def test_the_first_json_object_of_a_reply_is_read(text, expected):
    assert parse_json(text) == expected


@pytest.mark.parametrize("text", ["没有", "{坏了}", "[1, 2]"])
def test_a_reply_without_a_json_object_is_refused(text):
    with pytest.raises(ValueError):
        parse_json(text)
