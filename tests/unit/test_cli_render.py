"""How the CLI prints the API's times in its tables."""

from reverb_cli.render import short_time


def test_a_time_is_printed_to_the_second_with_a_four_digit_year() -> None:
    assert short_time("2025-01-31T14:03:07.123456Z") == "2025-01-31 14:03:07"
    assert short_time("0037-10-05T01:02:03+00:00") == "0037-10-05 01:02:03"
    assert short_time(None) == "-"
