"""Cron in words (schedule/words.py): the common forms read as a sentence, everything else comes
back as the cron text, never as a wrong sentence."""

from __future__ import annotations

import pytest

from dagu.schedule.words import describe

SAID = [
    ("* * * * *", "every minute"),
    ("*/1 * * * *", "every minute"),
    ("*/15 * * * *", "every 15 minutes"),
    ("0 * * * *", "every hour"),
    ("@hourly", "every hour"),
    ("30 * * * *", "every hour at :30"),
    ("0,30 * * * *", "every hour at :00 and :30"),
    ("0 */2 * * *", "every 2 hours"),
    ("15 */6 * * *", "every 6 hours at :15"),
    ("0 3 * * *", "at 03:00 every day"),
    ("@daily", "at 00:00 every day"),
    ("@midnight", "at 00:00 every day"),
    ("5 14 * * *", "at 14:05 every day"),
    ("0 9,17 * * *", "at 09:00 and 17:00 every day"),
    ("0 9 * * 1-5", "at 09:00 on Monday to Friday"),
    ("0 9 * * MON-FRI", "at 09:00 on Monday to Friday"),
    ("0 9 * * mon,wed,fri", "at 09:00 on Monday, Wednesday and Friday"),
    ("0 0 * * 0", "at 00:00 on Sunday"),
    ("0 0 * * 7", "at 00:00 on Sunday"),
    ("@weekly", "at 00:00 on Sunday"),
    ("0 10 * * 6,0", "at 10:00 on Saturday and Sunday"),
    ("0 0 1 * *", "at 00:00 on day 1 of every month"),
    ("@monthly", "at 00:00 on day 1 of every month"),
    ("0 6 1,15 * *", "at 06:00 on days 1 and 15 of every month"),
    ("0 0 1 1 *", "at 00:00 on 1 January"),
    ("@yearly", "at 00:00 on 1 January"),
    ("0 8 * 1-3 *", "at 08:00 every day in January to March"),
    ("0 8 * * 1 ", "at 08:00 on Monday"),
    ("*/5 9-17 * * 1-5", "every 5 minutes from 09:00 to 17:59 on Monday to Friday"),
    ("* 9 * * *", "every minute from 09:00 to 09:59"),
    ("0 9-17 * * *", "every hour from 09:00 to 17:00"),
    ("30 9-17 * * *", "every hour at :30 from 09:30 to 17:30"),
    ("*/10 * * JUL *", "every 10 minutes in July"),
    ("0 12 1 jul,dec *", "at 12:00 on day 1 in July and December"),
    ("0 0 * * 0-6", "at 00:00 every day"),
]

UNSAID = [
    "0 0 1 * 1",          # day of month OR day of week: cron fires on either
    "0 0 L * *",          # last day of the month
    "0 0 * * 1#2",        # the second Monday
    "0 9-17/2 * * *",     # a step inside a range
    "0 0 */2 * *",        # every other day of the month
    "0 0,6,12,18,21 * * *",  # five times of day: the cron text is shorter
    "*/15 */2 * * *",
    "0 25 * * *",         # no such hour
    "61 * * * *",
    "0 0 * * 5-1",        # a backwards range
    "0 0 * *",            # four fields
    "0 0 0 * * *",        # six fields (seconds)
    "@every 5m",
    "",
]


@pytest.mark.parametrize(("expr", "words"), SAID)
def test_common_forms_read_as_a_sentence(expr: str, words: str) -> None:
    assert describe(expr) == words


@pytest.mark.parametrize("expr", UNSAID)
def test_other_forms_come_back_as_the_cron_text(expr: str) -> None:
    assert describe(expr) == " ".join(expr.split())


def test_whitespace_is_normalised_in_the_fallback() -> None:
    assert describe("0  0   L * *") == "0 0 L * *"
