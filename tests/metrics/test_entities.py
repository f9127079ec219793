"""Entity retention, new-entity rate and label flips on hand-built entity sets, and spaCy NER on a known sentence."""

import math

import pytest

from evalsuite.metrics.entities import Entity, drift, extract, label_flip_rate, mentioned, new_entity_rate, retention

ELIZA, DARCY, LONDON = Entity("elizabeth", "PERSON"), Entity("darcy", "PERSON"), Entity("london", "GPE")


def test_mentions_are_whole_words_case_insensitive():
    assert mentioned("darcy", "Mr. DARCY bowed.")
    assert not mentioned("darcy", "the Darcyish manner")
    assert mentioned("new york", "to New York.")


def test_retention_new_rate_and_flips_by_hand():
    prompt = {ELIZA, DARCY, LONDON}
    assert retention(prompt, "Elizabeth went to London.") == pytest.approx(2 / 3)
    assert math.isnan(retention(set(), "anything"))
    assert new_entity_rate({ELIZA, Entity("bath", "GPE")}, {"elizabeth", "darcy"}) == pytest.approx(1 / 2)
    assert math.isnan(new_entity_rate(set(), {"x"}))
    # darcy re-tagged as an ORG (a flip), london still a GPE
    assert label_flip_rate(prompt, {Entity("darcy", "ORG"), LONDON}) == pytest.approx(1 / 2)
    assert math.isnan(label_flip_rate(prompt, {Entity("bath", "GPE")}))


def test_drift_remembers_entities_of_earlier_windows():
    windows = [("Elizabeth met Jane.", {ELIZA, Entity("jane", "PERSON")}),
               ("Jane and Bingley.", {Entity("jane", "PERSON"), Entity("bingley", "PERSON")})]
    rows = drift({ELIZA, DARCY}, windows)
    assert [r["retention"] for r in rows] == [0.5, 0.0]
    assert [r["new_rate"] for r in rows] == [0.5, 0.5]  # jane is new in window 0, not in window 1


def test_spacy_finds_people_and_places():
    (ents,) = extract(["Elizabeth Bennet met Mr. Darcy in London on Monday."])
    names = {e.text: e.label for e in ents}
    assert names.get("elizabeth bennet") == "PERSON" and names.get("london") == "GPE"
    assert "monday" not in names  # dates are not tracked
