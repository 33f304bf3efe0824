"""The programmatic labeller of the end-to-end examples: format checks, scores, preferences."""
import numpy as np

from minillm.align import tasks


def test_score_and_constraint():
    assert tasks.satisfied("v:abc=", "aeiou\n") and tasks.score("v:abc=", "aeiou\n") == 1.0
    assert tasks.satisfied("c:abc=", "bcd\n") and not tasks.satisfied("c:abc=", "bca\n")
    assert tasks.score("c:abc=", "bca\n") == 2 / 3
    for bad in ("aei", "ae\n", "aeiouae\n", "aE1\n"):           # no newline, too short/long, not letters
        assert tasks.score("v:abc=", bad) == -1.0
    assert tasks.label_pair("v:abc=", "bcd\n", "abe\n") == ("abe\n", "bcd\n")
    assert tasks.label_pair("v:abc=", "bcd\n", "fgh\n") is None


def test_demonstrations_are_well_formed_and_ignore_the_instruction():
    rng = np.random.default_rng(0)
    data = tasks.sft_data(2000, rng)
    assert all(len(p) == 6 and p[1] == ":" and p[-1] == "=" for p, _ in data)
    assert all(tasks.score(p, r) >= 0 for p, r in data)
    # about E[2^-n], n uniform in 3..6, satisfy the instruction by chance
    rate = np.mean([tasks.satisfied(p, r) for p, r in data])
    assert 0.03 < rate < 0.09
    ids, mask = tasks.sft_examples(data[:1])[0]
    assert tasks.decode(ids[mask > 0]) == data[0][1] and tasks.decode(ids[mask == 0]) == data[0][0]
