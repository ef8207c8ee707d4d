"""A tiny script- and lexicon-based language detector for en / fr / zh: R1's language consistency.

R1 rewards "the proportion of target-language words in the chain of thought". A language-ID model is
overkill for three languages with different scripts or function words, so:
- every CJK ideograph counts as one Chinese word;
- a Latin word with a French diacritic (é, è, à, ç, ...) is French;
- other Latin words are French or English when they are in a small lexicon of function words and of
  the vocabulary of our task traces; a word in both lexicons (`on`, `total`, ...) is removed from both;
- remaining Latin words (`x`, names, unknown words) are "latin": not evidence for en vs fr, but evidence
  against Chinese. Numbers, symbols and equations are neutral.

`language_share(text, "zh")` = zh / (zh + en + fr + latin); for en/fr, target / (zh + en + fr).
None when the text holds no evidence at all (e.g. pure arithmetic): the share is then undefined.
"""

from __future__ import annotations

import re
from collections import Counter

from tinyseek.tasks.base import LANGUAGES, check_language

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ÿŒœ]+")
_FRENCH_LETTERS = set("àâçéèêëîïôûùüÿœ")

_EN_WORDS = """the a an and or is are was be been of to in on at for with by from that this these it its we i you
    so then now next first if not no yes but as all each what which how find get make use using write
    carry borrow check redo answer step steps number numbers sum total result wait let me us think because
    therefore thus equals gives minus times divided greatest common divisor solve most once have has
    need there try again right wrong correct hmm okay digit digits column add subtract multiply
    remainder value both same than other should must can will would"""
_FR_WORDS = """le la les l un une des du de d et ou est sont je j nous on donc alors puis si pas ne n pour avec
    par sur dans que qui quoi ce cette ces il elle mais comme chaque tous toutes combien font fait
    trouvez obtenez nombre nombres retiens recommence somme total moins fois grand commun diviseur au
    aux en chiffre chiffres colonne ajoute attends encore bon juste faux correct essayons donne reste
    valeur doit peut"""
_OVERLAP = set(_EN_WORDS.split()) & set(_FR_WORDS.split())
_EN = set(_EN_WORDS.split()) - _OVERLAP
_FR = set(_FR_WORDS.split()) - _OVERLAP


def language_counts(text: str) -> Counter[str]:
    """Words attributed to `en`, `fr`, `zh` and to the unattributed `latin` bucket."""
    counts: Counter[str] = Counter(zh=len(_CJK.findall(text)))
    for word in _LATIN_WORD.findall(text):
        lower = word.lower()
        if _FRENCH_LETTERS.intersection(lower) or lower in _FR:
            counts["fr"] += 1
        elif lower in _EN:
            counts["en"] += 1
        else:
            counts["latin"] += 1
    return counts


def language_share(text: str, lang: str) -> float | None:
    """Share of the text's language evidence that is in `lang` (see module docstring); None if none."""
    check_language(lang)
    counts = language_counts(text)
    identified = counts["en"] + counts["fr"] + counts["zh"]
    total = identified + counts["latin"] if lang == "zh" else identified
    return counts[lang] / total if total else None


def detect_language(text: str) -> str | None:
    """The language with the most attributed words; ties go to the earlier of en, fr, zh; None if none."""
    counts = language_counts(text)
    best = max(LANGUAGES, key=lambda lang: counts[lang])
    return best if counts[best] else None
