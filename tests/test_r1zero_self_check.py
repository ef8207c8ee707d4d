"""The self-check detector against traces the task families really render, in every language."""

import pytest

from tinyseek.chat_template import r1_zero_completion
from tinyseek.r1zero.self_check import is_redoing, is_self_checking, self_check_share
from tinyseek.tasks import LANGUAGES, get_task


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("family", ["addition", "multiplication", "gcd", "countdown"])
def test_detects_rendered_self_checks_in_every_language(family, lang):
    task = get_task(family)
    for problem in [p for _, p in zip(range(5), task.sample(0, 2), strict=False)]:
        checked = task.trace(problem, lang, error_rate=0.9, self_check_rate=1.0)
        plain = task.trace(problem, lang, error_rate=0.9, self_check_rate=0.0)
        assert is_self_checking(r1_zero_completion(checked.reasoning, checked.answer))
        assert not is_self_checking(r1_zero_completion(plain.reasoning, plain.answer))
        assert not is_redoing(r1_zero_completion(plain.reasoning, plain.answer))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_redo_detected_only_when_a_failed_check_redoes_the_work(lang):
    task = get_task("gcd")  # a family whose check redoes the work only when it fails
    traces = [task.trace(p, lang, 1.0, 1.0) for _, p in zip(range(40), task.sample(3, 2), strict=False)]
    assert any(t.slipped for t in traces) and any(not t.slipped for t in traces)
    for t in traces:
        assert is_redoing(t.text()) == t.slipped


def test_marker_must_start_a_reasoning_line():
    assert is_self_checking(" <think>\n1+2=3, write 3.\n  Check: 3-2=1 ✓\n</think>\n<answer>3</answer>")
    assert not is_self_checking(" <think>\nI will not do a Check: here\n</think>\n<answer>3</answer>")
    # After </think> is the answer part: a "Check:" line there is not a verification step.
    assert not is_self_checking(" <think>\n1+2=3\n</think>\nCheck: 3-2=1 ✓\n<answer>3</answer>")
    assert is_self_checking("验算：3-2=1 ✓")


def test_share():
    texts = ["Check: 1+1=2 ✓", "1+1=2", "Vérification : 2-1=1 ✓", "none"]
    assert self_check_share(texts) == 0.5
    assert self_check_share([]) == 0.0
