"""The exit summary's balance line (pure)."""

from __future__ import annotations

from gunicorn_prefork.master.balance_report import LIST_UP_TO, balance_line


def test_names_each_slot_and_the_ratio() -> None:
    assert balance_line({1: 1200, 0: 1000}) == (
        "connections taken per slot: slot 0: 1,000, slot 1: 1,200 (most/fewest 1.20)")


def test_a_slot_that_took_none_is_said_without_a_ratio() -> None:
    assert balance_line({0: 5, 1: 0}) == (
        "connections taken per slot: slot 0: 5, slot 1: 0 (a slot took none)")


def test_nothing_to_compare_says_nothing() -> None:
    assert balance_line({}) is None
    assert balance_line({0: 100}) is None
    assert balance_line({0: 0, 1: 0}) is None


def test_many_slots_are_summarised() -> None:
    taken = {number: 10 + number for number in range(LIST_UP_TO + 1)}
    assert balance_line(taken) == (
        f"connections taken per slot: {LIST_UP_TO + 1} slots, fewest 10, "
        f"most {10 + LIST_UP_TO}, mean 14 (most/fewest {(10 + LIST_UP_TO) / 10:.2f})")
