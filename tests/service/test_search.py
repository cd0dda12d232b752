"""The palette's fuzzy match (service/search.py): letters in order, and the name being typed first."""

from __future__ import annotations

from dagu.service.search import fuzzy


def test_letters_must_appear_in_order() -> None:
    assert fuzzy("etl", "extract_transform_load") is not None
    assert fuzzy("lte", "extract_transform_load") is None
    assert fuzzy("x", "abc") is None


def test_positions_say_which_letters_matched() -> None:
    assert fuzzy("etl", "nightly-etl").positions == (8, 9, 10)
    assert fuzzy("ETL", "nightly-etl").positions == (8, 9, 10)  # case is ignored
    assert fuzzy("etl", "extract_transform_load").positions == (0, 8, 18)


def test_a_prefix_beats_a_substring_beats_a_scattered_match() -> None:
    prefix, inner, scattered = fuzzy("rep", "report"), fuzzy("rep", "daily-report"), fuzzy("rep", "run_etl_prod")
    assert prefix.score > inner.score > scattered.score


def test_word_starts_beat_letters_inside_words() -> None:
    assert fuzzy("dr", "daily_report").positions == (0, 6)
    assert fuzzy("dr", "daily_report").score > fuzzy("dr", "dinner").score


def test_a_shorter_name_wins_a_tie() -> None:
    assert fuzzy("etl", "etl").score > fuzzy("etl", "etl_backfill").score


def test_an_empty_query_matches_everything() -> None:
    assert fuzzy("", "anything").positions == ()
