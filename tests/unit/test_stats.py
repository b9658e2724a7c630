import math

import pytest

from ssrtune.evaluation.stats import accuracy, paired, ratio, relative_change, stderr, wilson_interval


def test_stderr_uses_the_sample_variance():
    # values 1, 0, 1, 0: mean .5, sample variance 1/3, SE = sqrt(1/3 / 4)
    assert stderr([1, 0, 1, 0]) == pytest.approx(math.sqrt(1 / 12))
    assert stderr([1.0]) == 0.0


def test_wilson_interval_by_hand():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416, half-width 1.96 / 1.38416 * sqrt(0.016 + 0.009604)
    low, high = wilson_interval(8, 10)
    z = 1.959963984540054
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z / (1 + z * z / 10) * math.sqrt(0.8 * 0.2 / 10 + z * z / 400)
    assert (low, high) == pytest.approx((centre - half, centre + half))
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == pytest.approx(1.0)


def test_accuracy_summary():
    a = accuracy([True, True, False, True])
    assert a["value"] == 0.75 and a["n"] == 4 and a["ci95"][0] < 0.75 < a["ci95"][1]


def test_paired_difference_standard_error_and_flips():
    base = [1, 1, 0, 0, 1]
    other = [1, 0, 1, 1, 1]
    p = paired(base, other)
    # differences 0, -1, 1, 1, 0: mean .2, sample variance (0.04 + 1.44 + 0.64 + 0.64 + 0.04) / 4 = 0.7
    assert p["diff"] == pytest.approx(0.2)
    assert p["stderr"] == pytest.approx(math.sqrt(0.7 / 5))
    assert p["gained"] == 2 and p["lost"] == 1 and p["n"] == 5
    assert p["ci95"][0] == pytest.approx(0.2 - 1.959963984540054 * math.sqrt(0.14))
    with pytest.raises(ValueError, match="same documents"):
        paired([1], [1, 0])


def test_relative_change_is_the_papers_drop():
    assert relative_change(0.5, 0.4) == pytest.approx(-0.2)
    assert relative_change(0.4, 0.5) == pytest.approx(0.25)
    assert relative_change(0.0, 0.3) is None


def test_ratio_of_nothing_is_the_callers_choice():
    assert ratio(1, 4) == 0.25 and ratio(1, 0) is None and ratio(0, 0, 0.0) == 0.0
