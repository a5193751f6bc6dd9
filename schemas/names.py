"""Name normalisation and match keys for hit/no-hit matching.

This module owns how a person's name becomes the strings that a hit/no-hit
query compares. A later feature computes a keyed blind index (HMAC under a
key the federation's states share) of each key from ``match_keys`` and sends
only those digests, never the name (DESIGN.md, "Sovereignty and minimal
sharing"). Two names *match* when their key sets intersect. Changing a rule
here changes the keys, so every rule change must bump ``KEY_VERSION`` and
the indexes must be rebuilt.

``normalise`` is the first step: it applies NFKC, drops invisible characters
(Unicode's default-ignorable code points: soft hyphen, zero-width space and
joiners, direction marks, variation selectors), transliterates Cyrillic
(Doc 9303, ``schemas.translit``), applies NFKC again, case-folds, writes
letters whose diacritic makes another consonant as their digraph (``LETTER_VALUES``: Ş → sh,
Ç → ch, Ž → zh), strips the remaining diacritics (Ä → a, Ñ → n, Ō → o),
drops apostrophes (Oʻ, O', O‘ → o) and turns hyphens, whitespace and other
punctuation into single spaces. It is idempotent.

``match_keys`` then rewrites each word by ``COLLAPSED`` (in that order) so
that spellings of one Cyrillic name in the common systems (ICAO, the old
Soviet/BGN-style passport spelling, the national Latin alphabets, German
and French spellings) become one string. Words are sorted, since records
from the region write the surname first and Latin documents write it last.

Collapsing too much makes false hits; ``NOT_COLLAPSED`` lists the
variants deliberately kept apart and why. Two rules deserve a word:

- A Latin ``j`` is Ж/ДЖ in English, Uzbek, Turkmen and Kazakh spelling but
  Й in German and other Central European spelling (Juldaschew = Юлдашев).
  Rather than collapse j with y (which would make Zhuldyz match Yuldyz), a
  Latin name containing ``j`` gets two keys: one reading j as Ж, one as Й.
  (Our own transliterations of a Cyrillic name use j for Ж only.)
- A Cyrillic name gets the keys of its ``icao`` and ``national`` spellings
  (of ``lang``, or of every language whose alphabet has all its letters), and
  of the reading of Ё as "yo" (Doc 9303 writes E), so that it matches Latin
  records written in any of those systems.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from schemas.translit import LANGUAGES, TABLES, has_cyrillic, to_latin

__all__ = [
    "COLLAPSED",
    "KEY_NUMBER",
    "KEY_VERSION",
    "LETTER_VALUES",
    "NOT_COLLAPSED",
    "markdown_section",
    "match_keys",
    "normalise",
    "readings",
    "visible",
]

#: Prefix of every key; bump it whenever a rule below changes. (n2: invisible
#: characters are dropped; under n1 a zero-width space split a word in two.)
KEY_VERSION = "n2"
#: The number of ``KEY_VERSION``, which only grows (stored beside recorded keys).
KEY_NUMBER = int(KEY_VERSION[1:])

#: Letters (after case folding) whose diacritic or shape makes a different
#: sound, written as that sound instead of losing the diacritic.
LETTER_VALUES: Mapping[str, str] = MappingProxyType(
    {
        "š": "sh", "ş": "sh", "ș": "sh", "č": "ch", "ç": "ch", "ž": "zh",
        "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th",
        "ı": "i", "ħ": "h", "ŋ": "n", "ə": "a",
    }
)  # fmt: skip

_APOSTROPHES = frozenset("'`\u00b4\u02b9\u02bb\u02bc\u02bd\u2018\u2019\u2032")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
#: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): characters
#: that show nothing, so a name written with one inside looks like the name without
#: it. Dropped, not read as a word break: "Ai\u200bgerim" is "aigerim".
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)

_C = "bcdfghjklmnpqrstvwxz"  # consonant letters; y is a glide or the vowel ы
_V = "aeou"  # vowels that follow a glide

#: The rewrite rules of ``match_keys``, applied in this order to each word
#: of the normalised name: (pattern, replacement, why).
COLLAPSED: tuple[tuple[str, str, str], ...] = (
    ("schtsch|shtsch|shch|shtch", "sh",
     "Щ: ICAO SHCH, German SCHTSCH; also collapsed with Ш, which Central Asian "
     "records often write for Щ (Shcherbakov = Sherbakov)"),
    ("tsch|tch", "ch", "Ч: German TSCH, French TCH"),
    ("dzh|dsch|dj|zh", "j",
     "Ж and ДЖ/Җ/Ҷ: ICAO ZH and DZH, French DJ, German DSCH, Uzbek/Turkmen/Kazakh J"),
    ("sch", "sh", "Ш: German SCH"),
    ("kh|x", "h", "Х/Ҳ/Һ: ICAO KH, Uzbek X, Turkmen/Kazakh/Tajik H"),
    ("gh", "g", "Ғ: Tajik GH, ICAO G, Uzbek Gʻ (apostrophe already dropped)"),
    ("q", "k", "Қ: national Q, ICAO K"),
    ("w", "v", "В: Turkmen and German W, others V"),
    ("tz", "ts", "Ц: German TZ"),
    (r"^[iy](?=[aeou])", "y",
     "Я Ю Ё Е at the start of a word: ICAO IA IU, others YA YU (German JA JU read as Й)"),
    (r"^ye", "e", "Е at the start of a word: old passports YE, ICAO E (Yelena = Elena)"),
    (rf"(?<=[{_V}i])i", "y", "Й after a vowel: ICAO I, others Y (Aibek = Aybek, Sergei = Sergey)"),
    (rf"(?<=[{_V}i])ye", "e",
     "Е after a vowel: BGN/Kazakh/Uzbek YE, ICAO E, Turkmen ÝE (Nazarbayev = Nazarbaev)"),
    (rf"(?<=[{_C}])(?:ii|iy|yi|y)(?=[{_V}])", "i",
     "Я Ю after a consonant, or Ь/И before them: ICAO IA IIA, others YA IYA "
     "(Daria = Darya, Mariia = Mariya = Maria)"),
    (rf"(?<=[{_C}])yi", "i", "Ь before И: BGN YI, ICAO I (Ilyinichna = Ilinichna)"),
    (r"(?:ii|iy|yi|yy)$", "i",
     "-ИЙ -ЫЙ at the end: ICAO II and Y, others IY, Y (Dmitrii = Dmitriy)"),
    (rf"(?<=[{_C}])y$", "i",
     "final Y after a consonant = I (Dmitry = Dmitri; Abishuly = Abishuli)"),
    (rf"([{_C}])\1+", r"\1", "double consonants (Muhammad = Muhamad, Gaffor = Gafor)"),
)  # fmt: skip

#: Variants deliberately not collapsed: (variants, why).
NOT_COLLAPSED: tuple[tuple[str, str], ...] = (
    ("u / o", "Uzbek Ў is U in Doc 9303 but Oʻ in the national alphabet; collapsing "
     "u with o would merge many distinct names. A Cyrillic name gets both keys."),
    ("yo / e", "Doc 9303 writes Ё as E (Elkina), other systems YO (Yolkina); "
     "collapsing would merge Yoʻldosh (Йўлдош) with Eldosh. A Cyrillic name gets both "
     "keys."),
    ("a / o", "Uzbek and Tajik names written the Russian way (Yuldashev) and the "
     "national way (Yoʻldoshev) differ in vowels; those are different spellings of "
     "record, not transliteration variants."),
    ("i / y inside a word", "Ы (Y) and И (I) are different letters (Kyrgyz, Myrzabek); "
     "only word endings collapse."),
    ("ch / h", "German CH is Х (Chodschajew) but CH is Ч everywhere else."),
    ("j / y", "J is Ж in some systems and Й in others; a name with J gets one key "
     "for each reading instead."),
    ("ks / x", "X is Uzbek Х (Xurshid), so it collapses with H; Alexander and "
     "Aleksandr therefore do not match."),
    ("c / ts / k", "C alone is Ц in Polish/Czech and K in English; too ambiguous."),
    ("tj, tsj", "Swedish TJ and Dutch TSJ for Ч; none of our systems produce them, "
     "and TJ also stands for Т + Й."),
    ("ou / u", "French OU for У; Latin names with a real OU would merge."),
    ("ue / u, ae / a, oe / o", "German umlaut spellings; Ü Ä Ö themselves lose their "
     "dots, but E after a vowel is usually a letter of its own (Raev = Раев)."),
    ("-zoda / -ov, -ovich / -ovna", "Tajik surnames in -zoda often replaced an "
     "earlier -ov surname: they are different legal names. Patronymics in -ovich and "
     "-ovna say the sex."),
    ("double vowels", "Aa, ee and the like occur as real letter pairs."),
    ("word order", "not a variant: words are sorted, so order never matters."),
)  # fmt: skip

_RULES = tuple((re.compile(pattern), replacement) for pattern, replacement, _ in COLLAPSED)
_J_AS_Y = re.compile(r"(?<!d)j")


def _known(lang: str | None) -> str | None:
    # A language without tables of ours (uk, be, ...) is read like an unknown one.
    return lang if lang in TABLES else None


def _transliterate(name: str, lang: str | None) -> str:
    return to_latin(name, _known(lang) or "ru", "icao", keep_unknown=True)


_MOST_PASSES = 3


def visible(text: str) -> str:
    """``text`` without the invisible characters :func:`normalise` drops."""
    return _INVISIBLE.sub("", text)


def normalise(name: str, lang: str | None = None) -> str:
    """The name in lower-case Latin letters without diacritics, words spaced once.

    Cyrillic is transliterated with the ``icao`` table of ``lang`` (Russian
    if not given or not one of ``schemas.translit.LANGUAGES``; it falls back
    to every letter of the six alphabets and of Doc 9303's Slavic table).
    """
    # After NFKC, so that what NFKC yields is checked (it keeps invisible ones invisible).
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", name))
    # A Cyrillic letter no table knows (kept as it is) may lose its marks below and
    # become one a table knows (Ӫ: ө and a diaeresis): then transliterate again, so
    # that normalising a normalised name changes nothing.
    for _ in range(_MOST_PASSES):
        before = text
        if has_cyrillic(text):
            text = _transliterate(text, lang)
        text = text.casefold()
        text = "".join(LETTER_VALUES.get(ch, ch) for ch in text)
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
        text = unicodedata.normalize("NFKC", text).casefold()
        if text == before or not has_cyrillic(text):
            break
    words: list[str] = []
    word: list[str] = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        if ch.isalnum():
            word.append(LETTER_VALUES.get(ch, ch))
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return " ".join(words)


@functools.lru_cache(maxsize=65_536)
def _collapsed(word: str) -> str:
    """One normalised word rewritten by ``COLLAPSED``, in order."""
    for rule, replacement in _RULES:
        word = rule.sub(replacement, word)
    return word


def _latin_spellings(name: str, lang: str | None) -> set[str]:
    lang = _known(lang)
    letters = {ch for ch in name.lower() if ch.isalpha()}
    langs = [lang] if lang else [
        code for code in LANGUAGES if letters <= set(_alphabet(code)) | _LATIN_LETTERS
    ] or ["ru"]  # fmt: skip
    spellings = set()
    for code in langs:
        for system in ("icao", "national"):
            spellings.add(to_latin(name, code, system, keep_unknown=True))
        # Doc 9303 writes Ё as E; every other system as YO, i.e. Й + О.
        spellings.add(to_latin(name.replace("ё", "йо").replace("Ё", "Йо"), code, keep_unknown=True))
    return spellings


_LATIN_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _alphabet(lang: str) -> str:
    tables = TABLES[lang]
    return "".join({*tables["icao"].letters, *tables["national"].letters})


def match_keys(name: str, lang: str | None = None) -> frozenset[str]:
    """The keys under which ``name`` is indexed; names match if their keys meet.

    ``lang`` (ISO 639-1) says which alphabet a Cyrillic name is written in;
    without it, or for a language other than ``schemas.translit.LANGUAGES``,
    every one of those languages whose alphabet has all the name's letters is
    tried. A name with no letters has
    no keys, so it matches nothing. Each key is ``KEY_VERSION`` + ``:`` + the
    collapsed words in sorted order; keys are what the hit/no-hit blind index
    will HMAC, never sent as they are.
    """
    return frozenset(f"{KEY_VERSION}:{' '.join(sorted(words))}" for words in readings(name, lang))


@functools.lru_cache(maxsize=4_096)
def readings(text: str, lang: str | None = None) -> frozenset[tuple[str, ...]]:
    """Every reading of ``text`` that :func:`match_keys` makes keys of (the
    transliteration systems of a Cyrillic text, the two readings of a Latin ``j``),
    each as its collapsed words **in the order written**, for matching a name's
    words inside longer text; a text with no letters or digits has none.
    ``match_keys`` is each reading's words sorted, behind ``KEY_VERSION``."""
    if has_cyrillic(text):
        # We know what each letter of our own spellings stands for.
        spellings = {normalise(spelling, lang) for spelling in _latin_spellings(text, lang)}
    else:
        normalised = normalise(text)
        spellings = {normalised, _J_AS_Y.sub("y", normalised)}
    return frozenset(tuple(_collapsed(word) for word in s.split()) for s in spellings if s)


def _code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`" if text else "(nothing)"


def markdown_section() -> str:
    """The matching rules as a section of ``docs/transliteration.md``."""
    lines = [
        "## Matching names (`schemas/names.py`)",
        "",
        "A hit/no-hit query compares keyed blind indexes (HMAC) of *match keys*, so",
        "every node must compute exactly the same keys: these rules are part of the",
        f"standard, and keys carry the version prefix `{KEY_VERSION}:`, which changes",
        "with any rule. Two names match when their key sets intersect.",
        "",
        "1. `normalise`: NFKC; invisible characters (Unicode's default-ignorable code",
        "   points: soft hyphen, zero-width space and joiners, direction marks,",
        "   variation selectors) dropped; Cyrillic transliterated with the `icao` table of the",
        "   name's language (Russian if unknown); case folding; the letters below",
        "   written as their sound; other diacritics stripped; apostrophes dropped;",
        "   anything else that is not a letter or digit separates words.",
        "2. A Latin name containing `j` is also read with every `j` not after `d` as",
        "   `y` (German and Central European spelling, where J is Й).",
        "3. A Cyrillic name is read in the `icao` and `national` systems of its",
        "   language (of every language whose alphabet has all its letters, if the",
        "   language is not given), and once more with Ё as Й + О.",
        "4. Each word is rewritten by the rules below, in order (Python regular",
        "   expressions), and the words are sorted.",
        "",
        "| letter | written |",
        "|---|---|",
        *(f"| {k} | `{v}` |" for k, v in LETTER_VALUES.items()),
        "",
        "| # | pattern | becomes | why |",
        "|---|---|---|---|",
        *(
            f"| {n} | {_code(pattern)} | {_code(replacement)} | {why} |"
            for n, (pattern, replacement, why) in enumerate(COLLAPSED, 1)
        ),
        "",
        "Deliberately **not** collapsed, because collapsing them would make false hits:",
        "",
        "| variants | why |",
        "|---|---|",
        *(f"| {variants} | {why} |" for variants, why in NOT_COLLAPSED),
    ]
    return "\n".join(lines) + "\n"
