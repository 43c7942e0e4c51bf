import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from textvae.evaluation.judge import END, START, UNK, KneserNey, fluency, path_figures, words

ADJECTIVES = ["red", "green", "blue", "old", "young", "tall", "small", "quiet", "loud", "bright", "dark", "warm"]
NOUNS = ["cat", "dog", "bird", "fox", "horse", "farmer", "teacher", "sailor", "child", "river", "garden", "house"]
VERBS = ["sees", "follows", "finds", "likes", "watches", "paints", "helps", "meets"]
PLACES = ["market", "harbor", "forest", "village", "station", "meadow"]
TEMPLATES = ["the {a} {n} {v} the {n}",
             "a {n} {v} a {a} {n} near the {p}",
             "every morning the {n} walks to the {p}",
             "my {a} {n} never {v} anyone at the {p}",
             "why does the {n} sleep in the {a} {p}"]
SLOTS = {"a": ADJECTIVES, "n": NOUNS, "v": VERBS, "p": PLACES}


def _corpus(lines: int, seed: int = 0) -> list[str]:
    """Lines from a few templates with random fillers: clear word order, a small vocabulary."""
    rng = random.Random(seed)
    return [re.sub(r"\{(\w)\}", lambda m: rng.choice(SLOTS[m.group(1)]), rng.choice(TEMPLATES))
            for _ in range(lines)]


@pytest.fixture(scope="module")
def corpus():
    train = _corpus(3000, seed=0)
    seen = set(train)
    held_out = [line for line in _corpus(1500, seed=1) if line not in seen][:400]
    assert len(held_out) == 400
    return train, held_out


SMALL = [["a", "b", "c", "a"], ["b", "a"], ["c", "c", "c", "c", "a", "b"], ["a", "b"]] * 3 + [["a"], ["d", "a"]]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_after_a_context_sum_to_one(order):
    m = KneserNey.fit(SMALL, order=order)
    assert START not in m.vocabulary and {END, UNK} <= m.vocabulary
    contexts = [(), ("a",), ("zz",), (START,), (START, START), ("c", "c"), ("b", "a"), ("zz", "a"), ("a", "zz"),
                ("c", "c", "c"), ("q", "q", "q")]
    for context in contexts:
        total = sum(math.exp(m.logprob_next(context, token)) for token in m.vocabulary)
        assert abs(total - 1.0) < 1e-6, (order, context, total)


def test_a_bigram_model_matches_a_hand_computation():
    # Sequences "a b" and "a", order 2: padded <s> a b </s> and <s> a </s>.
    # Bigram (raw) counts: (<s>,a)=2, (a,b)=1, (b,</s>)=1, (a,</s>)=1 -> n1=3, n2=1, n3=n4=0.
    #   Y = 3/(3+2) = 0.6; D1 = 1 - 2*0.6*1/3 = 0.6; D2 = 2 - 3*0.6*0/1 = 2, clamped to 1.95.
    # Unigram continuation counts (distinct left neighbours): a=1, b=1, </s>=2 -> n1=2, n2=1.
    #   Y = 2/4 = 0.5; D1 = 1 - 2*0.5*1/2 = 0.5; D2 clamped to 1.95. Vocabulary {a, b, </s>, <unk>}: uniform 1/4.
    #   Total 4, back-off weight (0.5*2 + 1.95*1)/4 = 0.7375.
    #   P1(a) = (1-0.5)/4 + 0.7375/4 = 0.309375; P1(</s>) = (2-1.95)/4 + 0.184375 = 0.196875; P1(<unk>) = 0.184375.
    # Context a: total 2, two counts of 1, weight 0.6*2/2 = 0.6; P(b|a) = (1-0.6)/2 + 0.6*0.309375 = 0.385625.
    # Context <s>: total 2, one count of 2, weight 1.95/2 = 0.975; P(a|<s>) = (2-1.95)/2 + 0.975*0.309375
    #   = 0.326640625. Context b: total 1, weight 0.6; P(</s>|b) = 0.4 + 0.6*0.196875 = 0.518125.
    m = KneserNey.fit([["a", "b"], ["a"]], order=2)
    assert m.discounts[2][1:3] == pytest.approx((0.6, 1.95))
    assert m.discounts[1][1:3] == pytest.approx((0.5, 1.95))
    assert m.prob("a") == pytest.approx(0.309375)
    assert m.prob("</s>") == pytest.approx(0.196875)
    assert m.prob("never seen") == pytest.approx(0.184375)
    assert m.prob("b", ("a",)) == pytest.approx(0.385625)
    assert m.prob("a", (START,)) == pytest.approx(0.326640625)
    assert m.logprob(["a", "b"]) == pytest.approx(math.log(0.326640625 * 0.385625 * 0.518125))
    assert m.perplexity([["a", "b"]]) == pytest.approx((0.326640625 * 0.385625 * 0.518125) ** (-1 / 3))


def test_lower_orders_use_continuation_counts():
    # "york" follows only "new", though 20 times; "zoo" follows four different words once each.
    rng = random.Random(0)
    filler = [[rng.choice(["a", "the", "my", "one", "his", "her", "our", "its"]), rng.choice(["cat", "dog", "fox", "owl", "hen", "cow"])]
              for _ in range(150)]
    m = KneserNey.fit([["new", "york"]] * 20 + [["a", "zoo"], ["the", "zoo"], ["my", "zoo"], ["one", "zoo"]] + filler,
                      order=2)
    assert m.counts[1][("york",)] == 1 and m.counts[1][("zoo",)] == 4
    assert m.counts[2][("new", "york")] == 20
    assert m.prob("zoo") > 2 * m.prob("york")          # raw counts would say the opposite
    assert m.prob("york", ("new",)) > 0.9
    # At order 3 the bigram "new york" has one left neighbour, but "<s> new" can only follow padding: raw count.
    m = KneserNey.fit([["new", "york"]] * 20 + filler, order=3)
    assert m.counts[2][("new", "york")] == 1 and m.counts[2][(START, "new")] == 20


def test_shuffled_words_score_worse_than_real_text(corpus):
    train, held_out = corpus
    m = KneserNey.fit([words(t) for t in train])
    rng = random.Random(0)
    shuffled = []
    for line in held_out:
        w = words(line)
        rng.shuffle(w)
        shuffled.append(w)
    real = m.perplexity([words(t) for t in held_out])
    assert real < m.perplexity(shuffled)
    assert m.perplexity(shuffled) / real > 1.5


def test_unseen_words_get_finite_log_probabilities(corpus):
    train, _ = corpus
    m = KneserNey.fit([words(t) for t in train])
    lp = m.logprob(["the", "zebra", "quux", "sees", "the", "cat"])
    assert math.isfinite(lp) and lp < 0
    assert math.isfinite(m.logprob_next(("zebra", "quux"), "flurb"))
    assert math.isfinite(m.logprob([]))
    assert m.logprob(["zebra"]) == pytest.approx(m.logprob(["quux"]))     # both are <unk>


def test_a_given_vocabulary_is_shared():
    m = KneserNey.fit([["a", "b"], ["b", "x"]], order=2, vocabulary=["a", "b", "c"])
    assert m.vocabulary == {"a", "b", "c", END, UNK}
    assert m.counts[2][("b", UNK)] == 1                     # x is outside the vocabulary
    assert sum(m.prob(t, ("b",)) for t in m.vocabulary) == pytest.approx(1.0, abs=1e-9)


def test_fluency_of_real_lines(corpus):
    train, held_out = corpus
    f = fluency(held_out, held_out, train)
    assert f["judge_ratio"] == pytest.approx(1.0)
    assert f["copied"] == 0.0
    assert f["real_words"] == 1.0 and f["distinct_2_ratio"] == pytest.approx(1.0)
    assert f["samples"] == f["held_out"] == len(held_out)
    f = fluency(train[:200], held_out, train)
    assert f["copied"] == 1.0


def test_fluency_of_shuffled_and_empty_samples(corpus):
    train, held_out = corpus
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(words(t), len(words(t)))) for t in held_out]
    assert fluency(shuffled, held_out, train)["judge_ratio"] > 1.5
    f = fluency([], held_out, train)
    assert math.isnan(f["judge_ratio"]) and math.isnan(f["copied"]) and math.isnan(f["reverse_ppl_ratio"])
    f = fluency(["", ""], held_out, train)
    assert math.isfinite(f["judge_ppl_samples"]) and math.isnan(f["real_words"]) and f["copied"] == 0.0


def test_reverse_perplexity_sees_mode_collapse(corpus):
    train, held_out = corpus
    real = fluency(held_out[:200], held_out[200:], train, seed=0)
    collapsed = fluency([held_out[0]] * 200, held_out[200:], train, seed=0)
    assert real["reverse_ppl_train"] == pytest.approx(collapsed["reverse_ppl_train"])     # same train lines
    assert collapsed["reverse_ppl_ratio"] > 2 * real["reverse_ppl_ratio"]
    assert collapsed["distinct_2_ratio"] < 0.2
    capped = fluency(held_out[:200], held_out[200:], train, reverse_lines=50)
    assert capped["reverse_ppl_train"] != real["reverse_ppl_train"]


def test_path_figures_count_new_middles_and_copies(corpus):
    train, held_out = corpus
    a, b = held_out[0], held_out[1]
    paths = [[a, a, a, train[0], "the red cat zzz", b, b],             # middles: a (an end), a copy, a new line
             [a, "x", b, train[1], "the blue dog qqq", "y", b]]        # middles: b (an end), a copy, a new line
    f = path_figures(paths, train, held_out=held_out)
    assert f["middles"] == 6
    assert f["new_middles"] == pytest.approx(4 / 6)
    assert f["copied"] == pytest.approx(2 / 6)
    words_of_middles = [w for t in [a, train[0], "the red cat zzz", b, train[1], "the blue dog qqq"]
                        for w in words(t)]
    assert f["real_words"] == pytest.approx(1 - 2 / len(words_of_middles))   # zzz and qqq are not in train
    judge = KneserNey.fit([words(t) for t in train])
    assert path_figures(paths, train, judge=judge, held_out=held_out)["judge_ratio"] == pytest.approx(f["judge_ratio"])
    with pytest.raises(ValueError):
        path_figures(paths, train)


def test_characters_judge_word_lists():
    rng = random.Random(0)
    stems = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "peach", "river", "ocean", "stream", "brook", "creek"]
    items = [rng.choice(stems) + rng.choice(["", "s", "ed", "ing", "er"]) for _ in range(600)]
    train, held_out = items[:500], [w for w in items[500:] if w not in set(items[:500])] or items[500:]
    scrambled = ["".join(rng.sample(w, len(w))) for w in held_out]
    f = fluency(held_out, held_out, train, unit="char")
    assert f["judge_ratio"] == pytest.approx(1.0)
    g = fluency(scrambled, held_out, train, unit="char")
    assert g["judge_ratio"] > 2.0
    assert g["real_words"] < f["real_words"]                 # still on whitespace words
    judge = KneserNey.fit([list(w) for w in train], order=5)
    assert judge.order == 5 and all(len(t) == 1 for t in judge.vocabulary - {END, UNK})
    p = path_figures([[train[0], "bananas", "grapeing", train[1]]], train, middle=slice(1, 3), held_out=held_out,
                     unit="char")
    assert p["middles"] == 2 and math.isfinite(p["judge_ratio"])
    with pytest.raises(ValueError):
        fluency(held_out, held_out, train, unit="byte")


def test_the_judge_loads_no_torch():
    code = "import sys, textvae.evaluation.judge; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=Path(__file__).parents[1])
