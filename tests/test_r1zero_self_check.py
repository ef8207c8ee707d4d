"""The self-check detector: hand-labelled traces (positives, negatives, near-misses) and rendered ones."""

import pytest

from tinyseek.chat_template import r1_zero_completion
from tinyseek.r1zero.self_check import is_redoing, is_self_checking, self_check_share
from tinyseek.tasks import LANGUAGES, get_task

ADD = "ones: 8+7=15, write 5, carry 1 → 5.\ntens: 5+6+1=12, write 2, carry 1 → 25.\nhundreds: 3+4+1=8, write 8 → 825."
CHECK_ADD = "Check: again, carefully.\nones: 8+7=15, write 5, carry 1 → 5.\ntens: 5+6+1=12, write 2, carry 1 → 25.\nhundreds: 3+4+1=8, write 8 → 825."


def done(reasoning: str, answer: str = "825") -> str:
    return f" <think>\n{reasoning}\n</think>\n<answer>{answer}</answer>"


# (completion, is a self-check) — written by hand, not rendered by the code under test. Positives: a
# check line followed by a verdict, in any language, well or badly executed (a wrong check is still a
# check). Negatives: no check; near-misses that only look like one.
LABELLED: list[tuple[str, bool]] = [
    (done(f"{ADD}\n{CHECK_ADD}\n825 = 825 ✓"), True),
    (done(f"{ADD}\n{CHECK_ADD}\n815 ≠ 825 ✗\nRedo:\nones: 8+7=15, write 5, carry 1 → 5."), True),
    (done(f"{ADD}\n{CHECK_ADD}\n825 = 826 ✓"), True),  # a sloppy verdict is still a verification step
    (
        done(f"{ADD}\nCheck: again, carefully.\nones: 7+8=15, write 5, carry 1 → 5.\n825 = 825 ✓"),
        True,
    ),  # a short check
    (done("ones: 8+7=15, write 5 → 5.\nCheck: 825-467=358 ✓"), True),
    (done("Check: 358+467=825 ✓"), True),
    (
        done(
            "12 = h1 t2.\nCheck: 6*12.\nones: 6*2=12, write 2, carry 1 → 2.\ntens: 6*1=6, 6+1=7, write 7 → 72.\n72 = 72 ✓",
            "72",
        ),
        True,
    ),
    (
        done(
            "176 = h1 t7 o6.\nones: 6*6=36, write 6, carry 3 → 6.\nCheck: 6*176.\n656 ≠ 1056 ✗\nRedo:", "1056"
        ),
        True,
    ),
    (done("个位：8+7=15，写5，进1 → 5。\n验算：467+358。\n个位：7+8=15，写5，进1 → 5。\n825 = 825 ✓"), True),
    (done("验算：825-467=358 ✓"), True),
    (done("unités : 8+7=15, j'écris 5, je retiens 1 → 5.\nVérification : 467+358.\n825 = 825 ✓"), True),
    (done("Vérification : 358+467=825 ✗\nJe recommence :\nunités : 8+7=15"), True),
    (done("   Check: again, carefully.\n   825 = 825 ✓"), True),  # indented lines
    (
        done("ones: 8+7=15, write 5 → 5.\nCheck: again, carefully.\nhundreds: 4+3+1=8 → 825.\n825 = 825 ✓"),
        True,
    ),
    (done("gcd(84, 36): 84 = 2*36 + 12, 36 = 3*12 + 0 → 12.\nCheck: 84/12=7, 36/12=3 ✓", "12"), True),
    (done("5*4=20, 20+3=23.\nCheck: 23-3=20, 20/4=5 ✓", "23"), True),
    (done("x = 4.\nCheck: 3*4+2=14 ✓", "4"), True),
    (done("Check: again, carefully.\nones: 7+8=15.\n815 ≠ 825 ✗"), True),
    (done("验算：6*176。\n656 ≠ 1056 ✗\n重新计算：\n个位：6*6=36", "1056"), True),
    (done(f"{ADD}\n{CHECK_ADD}\n825 = 825 ✓") + " trailing", True),
    (" <think>\nCheck: 1+1=2 ✓", True),  # truncated before </think>: the reasoning is all there is
    (done(ADD), False),
    (done(""), False),  # a direct answer
    (done("ones: 8+7=15, write 5 → 5.\ntens: 5+6=11, write 1, carry 1 → 15."), False),
    (done(f"{ADD}\nCheck: again, carefully."), False),  # vestigial check: no verdict follows
    (done(f"{ADD}\nCheck:"), False),
    (done(f"{ADD}\n1542 ✗ → 1542"), False),  # vestigial verdict without a check
    (done(f"{ADD}\n825 = 825 ✓"), False),  # a verdict, but nothing was checked
    (done("I will not do a Check: here ✓"), False),  # marker in the middle of a line
    (done("What is 358 + 467? Check: the sum ✓"), False),
    (done(ADD) + "\nCheck: 825-467=358 ✓", False),  # after </think>: the answer part
    (" <think>\nones: 8+7=15\n</think>\n<answer>825</answer>\nCheck: 825 ✓", False),
    (done("checking: 825-467=358 ✓"), False),  # another word, lowercase
    (done("check: 825-467=358 ✓"), False),  # markers are case-sensitive, as rendered
    (done("Checked 825 ✓"), False),
    (done("个位：8+7=15，写5，进1 → 5。\n十位：5+6+1=12，写2，进1 → 25。"), False),
    (done("unités : 8+7=15, j'écris 5, je retiens 1 → 5."), False),
    (done("Vérification"), False),
    (done("验算"), False),
    (done("Redo:\nones: 8+7=15, write 5, carry 1 → 5."), False),  # a redo without a check
    (done("ones: 8+7=15 ✓ write 5"), False),  # a tick without a check line
    (
        done("12 = h1 t2.\nones: 6*2=12, write 2, carry 1 → 2.\ntens: 6*1=6, 6+1=7, write 7 → 72.", "72"),
        False,
    ),
    ("", False),
    ("<answer>825</answer>", False),
]


def test_hand_labelled_precision_and_recall():
    assert len(LABELLED) >= 40
    positives = sum(label for _, label in LABELLED)
    assert 15 <= positives <= len(LABELLED) - 15  # both classes well represented
    predicted = [is_self_checking(text) for text, _ in LABELLED]
    tp = sum(p and label for p, (_, label) in zip(predicted, LABELLED, strict=True))
    precision = tp / max(1, sum(predicted))
    recall = tp / positives
    wrong = [text for p, (text, label) in zip(predicted, LABELLED, strict=True) if p != label]
    assert precision >= 0.9 and recall >= 0.9, wrong


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("family", ["addition", "multiplication", "gcd", "countdown"])
def test_detects_rendered_self_checks_in_every_language(family, lang):
    task = get_task(family)
    for problem in [p for _, p in zip(range(5), task.sample(0, 2), strict=False)]:
        checked = task.trace(problem, lang, error_rate=0.9, self_check_rate=1.0)
        plain = task.trace(problem, lang, error_rate=0.9, self_check_rate=0.0)
        direct = task.trace(problem, lang, direct_rate=1.0)
        assert is_self_checking(r1_zero_completion(checked.reasoning, checked.answer))
        assert not is_self_checking(r1_zero_completion(plain.reasoning, plain.answer))
        assert not is_self_checking(r1_zero_completion(direct.reasoning, direct.answer))
        assert not is_redoing(r1_zero_completion(plain.reasoning, plain.answer))


@pytest.mark.parametrize("family", ["gcd", "addition", "multiplication"])
@pytest.mark.parametrize("lang", LANGUAGES)
def test_redo_detected_only_when_a_failed_check_redoes_the_work(family, lang):
    task = get_task(family)
    traces = [task.trace(p, lang, 0.3, 1.0) for _, p in zip(range(40), task.sample(3, 1), strict=False)]
    assert any(t.slipped for t in traces) and any(not t.slipped for t in traces)
    for t in traces:
        assert is_redoing(t.text()) == t.slipped
        assert t.correct


def test_share():
    texts = ["Check: 1+1=2 ✓", "1+1=2", "Vérification : 2-1=1 ✓", "none"]
    assert self_check_share(texts) == 0.5
    assert self_check_share([]) == 0.0
