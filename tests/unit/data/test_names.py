"""UTKFace name parsing: valid variants, the five irregular real names, out-of-range labels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtlbench.data import GENDER_NAMES, RACE_NAMES, Labels, parse_name

# The five names of the real UTKFace archive that do not follow the pattern.
REAL_IRREGULAR = {
    "24_0_1_20170116220224657 .jpg.chip.jpg": "contains whitespace",
    "39_1_20170116174525125.jpg.chip.jpg": "the race field is missing",
    "55_0_0_20170116232725357jpg.chip.jpg": "missing '.' before 'jpg.chip.jpg'",
    "61_1_20170109142408075.jpg.chip.jpg": "the race field is missing",
    "61_1_20170109150557335.jpg.chip.jpg": "the race field is missing",
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("25_0_1_20170116174525125.jpg.chip.jpg", Labels(25, 0, 1)),
        ("1_1_4_20170109150557335.jpg.chip.jpg", Labels(1, 1, 4)),
        ("116_0_0_20170120134639935.jpg.chip.jpg", Labels(116, 0, 0)),
        ("0_1_2_1.jpg", Labels(0, 1, 2)),
        ("120_0_3_20170101.png", Labels(120, 0, 3)),
        ("33_1_3_20170101.jpeg", Labels(33, 1, 3)),
        ("33_1_3_20170101.JPG", Labels(33, 1, 3)),
        ("07_0_2_20170101.jpg", Labels(7, 0, 2)),
    ],
)
def test_valid_names(name: str, expected: Labels) -> None:
    assert parse_name(name) == expected


@pytest.mark.parametrize(("name", "reason"), sorted(REAL_IRREGULAR.items()))
def test_real_irregular_names_give_clear_reasons(name: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_name(name)
    message = str(info.value)
    assert reason in message
    assert "age_gender_race_datetime.jpg.chip.jpg" in message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("121_0_0_20170101.jpg.chip.jpg", "age 121 out of range 0-120"),
        ("130_0_0_20170101.jpg", "age 130 out of range 0-120"),
        ("30_2_0_20170101.jpg.chip.jpg", "gender 2 out of range 0-1"),
        ("30_0_5_20170101.jpg.chip.jpg", "race 5 out of range 0-4"),
        ("30_0_99_20170101.jpg.chip.jpg", "race 99 out of range 0-4"),
    ],
)
def test_out_of_range_labels(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("x_0_1_20170101.jpg", "age field 'x'"),
        ("-1_0_1_20170101.jpg", "age field '-1'"),
        ("30_m_1_20170101.jpg", "gender field 'm'"),
        ("30_0_1_2017x0101.jpg", "datetime field '2017x0101'"),
        ("30_0_1_2_3.jpg", "5 underscore-separated fields"),
        ("30_0.jpg", "2 underscore-separated fields"),
        ("30_0_1_20170101.gif", "extension"),
        ("30_0_1_20170101.jpg.txt", "extension"),
        ("30_0_²_20170101.jpg", "race field"),
    ],
)
def test_malformed_names(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_name(name)


def test_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="base name"):
        parse_name("UTKFace/25_0_1_20170116174525125.jpg.chip.jpg")


def test_label_names() -> None:
    assert RACE_NAMES == ("White", "Black", "Asian", "Indian", "Others")
    assert GENDER_NAMES == ("male", "female")


@given(
    age=st.integers(0, 120),
    gender=st.integers(0, 1),
    race=st.integers(0, 4),
    stamp=st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    suffix=st.sampled_from([".jpg.chip.jpg", ".jpg", ".png", ".jpeg"]),
)
def test_round_trip(age: int, gender: int, race: int, stamp: str, suffix: str) -> None:
    assert parse_name(f"{age}_{gender}_{race}_{stamp}{suffix}") == Labels(age, gender, race)


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        labels = parse_name(text)
    except ValueError as err:
        assert str(err)
    else:
        assert 0 <= labels.age <= 120 and labels.gender in (0, 1) and 0 <= labels.race <= 4
