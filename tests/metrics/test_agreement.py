"""Agreement statistics against values computed by hand (and the published Krippendorff example)."""

import math

import pytest

from evalsuite.metrics.agreement import cohen_kappa, krippendorff_alpha_nominal


def test_cohen_kappa_textbook_table():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_three_labels_by_hand():
    # a: L L R T R ; b: L R R T L.  p_o = 3/5.
    # counts a: L2 R2 T1, b: L2 R2 T1 -> p_e = (4+4+1)/25 = 9/25; kappa = (15/25-9/25)/(16/25) = 6/16
    a = ["L", "L", "R", "T", "R"]
    b = ["L", "R", "R", "T", "L"]
    assert cohen_kappa(a, b) == pytest.approx(6 / 16)


def test_cohen_kappa_perfect_and_undefined():
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))
    with pytest.raises(ValueError, match="differ in length"):
        cohen_kappa(["a"], ["a", "b"])


def test_krippendorff_published_nominal_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, nominal alpha = 0.743
    N = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
        [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
    ]
    units = list(zip(*coders))
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)


def test_krippendorff_small_by_hand():
    # units (a,a), (a,b), (b,b): coincidences o_aa=2, o_ab=o_ba=1, o_bb=2; n_a=n_b=3, n=6
    # alpha = 1 - (n-1) * (o_ab+o_ba) / (n_a n_b + n_b n_a) = 1 - 5*2/18 = 4/9
    units = [("a", "a"), ("a", "b"), ("b", "b")]
    assert krippendorff_alpha_nominal(units) == pytest.approx(4 / 9)


def test_krippendorff_two_raters_no_missing_perfect():
    assert krippendorff_alpha_nominal([("x", "x"), ("y", "y"), ("x", "x", "x")]) == pytest.approx(1.0)
    assert math.isnan(krippendorff_alpha_nominal([("x",), ("y", None)]))
