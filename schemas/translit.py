"""Cyrillic to Latin transliteration of names, and the ICAO 9303 MRZ form.

This module owns the transliteration tables for the Cyrillic alphabets of
Russian (ru), Kazakh (kk), Kyrgyz (ky), Tajik (tg), Turkmen (tk, as written
before 1993 and in old records) and Uzbek (uz), in two systems each:

``icao``
    ICAO Doc 9303 *Machine Readable Travel Documents*, 8th edition (2021),
    Part 3, Section 6, transliteration of Cyrillic characters. Doc 9303 lists
    the Russian letters plus І, Ў and letters of other Slavic alphabets; it is
    silent on the Central Asian letters (Ә Ғ Қ Ң Ө Ұ Ү Һ Җ Ҷ Ӣ Ӯ Ҳ). For those
    this module writes the plain Latin letter closest to the sound (Ә → A,
    Қ → K, Ҷ → J); each such choice is listed in ``System.notes`` and in
    ``docs/transliteration.md``.
``national``
    The state's own Latin writing: the Uzbek Latin alphabet (1995), the
    Turkmen Latin alphabet (1993, letter shapes of 1999), the Kazakh Latin
    alphabet presented in January 2021 (not used in passports yet), and for
    Tajik the romanisation of official English-language use. Russian and
    Kyrgyz passports use the Doc 9303 table itself, so for those languages
    ``national`` is the same table as ``icao``.

Every table is data (``TABLES``); the page ``docs/transliteration.md`` is
generated from it (and from the matching rules of ``schemas.names``) by
``python -m schemas.translit --markdown``, and a test keeps the two in step.
Letters a table lacks fall back to the language's ``icao`` table and then to
``ICAO_CYRILLIC`` (every letter any ``icao`` table knows); a Cyrillic letter
none of them knows raises ``UnknownLetterError`` rather than passing through
into a field that must be Latin.

Characters that are not Cyrillic pass through unchanged. Case follows the
source: a capital that becomes several Latin letters is written "Sh" inside
a capitalised word and "SH" inside an all-capital word.

``mrz`` gives the form of a name part in the machine-readable zone: A-Z and
the filler ``<`` only. This module depends only on the standard library.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ICAO_CYRILLIC",
    "LANGUAGES",
    "MRZ_LATIN",
    "SYSTEMS",
    "TABLES",
    "System",
    "UnknownLetterError",
    "has_cyrillic",
    "markdown",
    "mrz",
    "to_latin",
]

LANGUAGES = ("ru", "kk", "ky", "tg", "tk", "uz")
SYSTEMS = ("icao", "national")

#: Uzbek and Tajik apostrophes: U+02BB (oʻ, gʻ) and U+02BC (tutuq belgisi, ʼ).
#: Unicode recommends these modifier letters over the quotation marks ‘ ’ that
#: are often typed instead; ``schemas.common.LatinText`` accepts both U+02BB
#: and U+02BC but not U+2018.
TURNED_COMMA = "\u02bb"
APOSTROPHE = "\u02bc"


class UnknownLetterError(ValueError):
    """A Cyrillic letter that no table of this module knows."""


@dataclass(frozen=True)
class System:
    """One transliteration system for one language.

    Values are lower-case Latin; capitals are derived (see ``to_latin``).
    ``word_initial`` and ``after_vowel`` override ``letters`` at the start of
    a word and after a vowel letter, hard sign or soft sign of the source;
    ``digraphs`` take two source letters at once.
    """

    lang: str
    name: str
    title: str
    sources: tuple[str, ...]
    letters: Mapping[str, str]
    word_initial: Mapping[str, str] = field(default_factory=dict)
    after_vowel: Mapping[str, str] = field(default_factory=dict)
    digraphs: Mapping[str, str] = field(default_factory=dict)
    #: Capitals that are not ``str.upper`` of the small letter (Kazakh i → İ).
    capitals: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _frozen(mapping: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(mapping)


# --- ICAO Doc 9303 Part 3, Section 6 ------------------------------------------

_LANGUAGE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "ru": "Russian",
        "kk": "Kazakh",
        "ky": "Kyrgyz",
        "tg": "Tajik",
        "tk": "Turkmen Cyrillic",
        "uz": "Uzbek Cyrillic",
    }
)


#: Doc 9303's table for the 33 letters of the Russian alphabet.
_ICAO_RUSSIAN = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e",
    "ж": "zh", "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
    "ъ": "ie", "ы": "y", "ь": "", "э": "e", "ю": "iu", "я": "ia",
}  # fmt: skip

#: The other letters of Doc 9303's Cyrillic table (Belarusian, Ukrainian,
#: Serbian, Macedonian, Bulgarian). Only І and Ў occur in our languages; the
#: rest are here so that a name from a neighbouring alphabet still converts.
_ICAO_OTHER_SLAVIC = {
    "і": "i", "ў": "u", "ґ": "g", "є": "ie", "ї": "i", "ѓ": "g", "ђ": "d",
    "ѕ": "dz", "ј": "j", "ќ": "k", "љ": "lj", "њ": "nj", "ћ": "c", "џ": "dz",
    "ѫ": "u",
}  # fmt: skip

#: Our reading of the Central Asian letters Doc 9303 does not list: the base
#: letter of the sound, as in passports of the region (Ә → A, Қ → K, Ң → N).
_ICAO_CENTRAL_ASIAN = {
    "ә": "a", "ғ": "g", "қ": "k", "ң": "n", "ө": "o", "ұ": "u", "ү": "u",
    "һ": "h", "ҳ": "h", "җ": "j", "ҷ": "j", "ӣ": "i", "ӯ": "u",
}  # fmt: skip

_ICAO_SOURCE = (
    "ICAO Doc 9303, Machine Readable Travel Documents, 8th edition (2021), "
    "Part 3, Section 6 (transliteration of Cyrillic characters)"
)
_SILENT = (
    "Doc 9303 does not list {letters}; our choice is the plain Latin letter "
    "closest to the sound ({values}), without diacritics so that it is also the "
    "MRZ form."
)


def _icao(lang: str, extra: str, *, hard_sign: str = "ie", notes: tuple[str, ...] = ()) -> System:
    letters = dict(_ICAO_RUSSIAN)
    letters["ъ"] = hard_sign
    for letter in extra:
        letters[letter] = _ICAO_OTHER_SLAVIC.get(letter) or _ICAO_CENTRAL_ASIAN[letter]
    silent = [letter for letter in extra if letter in _ICAO_CENTRAL_ASIAN]
    if silent:
        shown = ", ".join(f"{ch.upper()} → {letters[ch].upper()}" for ch in silent)
        listed = " ".join(ch.upper() for ch in silent)
        notes = (_SILENT.format(letters=listed, values=shown), *notes)
    return System(
        lang=lang,
        name="icao",
        title=f"ICAO Doc 9303 ({_LANGUAGE_NAMES[lang]})",
        sources=(_ICAO_SOURCE,),
        letters=_frozen(letters),
        notes=notes,
    )


_RU_ICAO = System(
    lang="ru",
    name="icao",
    title="ICAO Doc 9303 (Russian passports)",
    sources=(
        _ICAO_SOURCE,
        "Russian Federation: Order of the Federal Migration Service of 15 October 2012 "
        "No. 320 (names in passports transliterated per Doc 9303)",
    ),
    letters=_frozen(dict(_ICAO_RUSSIAN)),
    notes=(
        "Russian passports use this table as their national romanisation, so `national` "
        "is the same table.",
        "Ё is E and Е is E at the start of a word too (no 'ye'); Ъ is IE; Ь is dropped. "
        "Earlier passports (Ministry of Internal Affairs Order No. 310 of 26 May 1997) "
        "used other values (Й → Y, Ю → YU, Я → YA, Ь → '), and spellings such as "
        "Yelena are common; names.match_keys collapses those variants.",
    ),
)

_KK_ICAO = _icao(
    "kk",
    "әғқңөұүһі",
    notes=(
        "Some copies of Doc 9303's table show a letter drawn like Һ with the value C; "
        "that row is the Serbian Ћ, so the Kazakh Һ (an 'h') is H here.",
        "Latin spellings of Kazakh names have varied (Nazarbayev: YE for Е after a "
        "vowel; Y for Й); this table is Doc 9303 as written, and names.match_keys "
        "collapses those variants.",
    ),
)
_KY_ICAO = _icao(
    "ky",
    "ңөү",
    notes=(
        "We could not obtain the text of a Kyrgyz regulation on passport "
        "romanisation; we assume passports follow Doc 9303 with Ң → N, Ө → O, Ү → U "
        "(to be confirmed with the Kyrgyz authorities), so `national` is the same "
        "table. Official English-language usage often writes J for Ж (Japarov); "
        "names.match_keys collapses zh/j.",
    ),
)
_TG_ICAO = _icao(
    "tg",
    "ғӣқӯҳҷ",
    hard_sign="",
    notes=(
        "Ҷ (a voiced 'j') is written J, not CH: the base letter Ч would change the sound. "
        "Ҳ is H (its sound) although Х is KH.",
        "Ъ marks a glottal stop in Tajik, not the Russian [j] that Doc 9303's IE "
        "stands for, so it is dropped.",
    ),
)
_TK_ICAO = _icao(
    "tk",
    "әҗңөү",
    notes=("Җ (a voiced 'j') is written J, as in the Turkmen Latin alphabet.",),
)
_UZ_ICAO = _icao(
    "uz",
    "ўқғҳ",
    hard_sign="",
    notes=(
        "Ў is U as in Doc 9303's Belarusian letter of the same shape.",
        "Ъ marks a glottal stop (tutuq belgisi) in Uzbek and is dropped.",
        "Uzbek passports print the national Latin spelling (see `national`); this table "
        "serves records that were romanised letter by letter.",
    ),
)

# --- national systems -----------------------------------------------------------

_UZ_LATIN = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo",
    "ж": "j", "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m",
    "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
    "ф": "f", "х": "x", "ц": "s", "ч": "ch", "ш": "sh", "ъ": APOSTROPHE,
    "ь": "", "э": "e", "ю": "yu", "я": "ya", "ў": "o" + TURNED_COMMA,
    "қ": "q", "ғ": "g" + TURNED_COMMA, "ҳ": "h",
}  # fmt: skip

_TK_LATIN = {
    "а": "a", "б": "b", "в": "w", "г": "g", "д": "d", "е": "e", "ё": "ýo",
    "ж": "ž", "җ": "j", "з": "z", "и": "i", "й": "ý", "к": "k", "л": "l",
    "м": "m", "н": "n", "ң": "ň", "о": "o", "ө": "ö", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ү": "ü", "ф": "f", "х": "h", "ц": "ts",
    "ч": "ç", "ш": "ş", "щ": "şç", "ъ": "", "ы": "y", "ь": "", "э": "e",
    "ә": "ä", "ю": "ýu", "я": "ýa",
}  # fmt: skip

_KK_LATIN = {
    "а": "a", "ә": "ä", "б": "b", "в": "v", "г": "g", "ғ": "ğ", "д": "d",
    "е": "e", "ё": "io", "ж": "j", "з": "z", "и": "i", "й": "i", "к": "k",
    "қ": "q", "л": "l", "м": "m", "н": "n", "ң": "ñ", "о": "o", "ө": "ö",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ұ": "ū", "ү": "ü",
    "ф": "f", "х": "h", "һ": "h", "ц": "ts", "ч": "ç", "ш": "ş", "щ": "şç",
    "ъ": "", "ы": "y", "і": "ı", "ь": "", "э": "e", "ю": "iu", "я": "ia",
}  # fmt: skip

_TG_LATIN = {
    "а": "a", "б": "b", "в": "v", "г": "g", "ғ": "gh", "д": "d", "е": "e",
    "ё": "yo", "ж": "zh", "з": "z", "и": "i", "ӣ": "i", "й": "y", "к": "k",
    "қ": "q", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ӯ": "u", "ф": "f", "х": "kh", "ҳ": "h",
    "ч": "ch", "ҷ": "j", "ш": "sh", "ъ": APOSTROPHE, "э": "e", "ю": "yu",
    "я": "ya",
}  # fmt: skip

_UZ_NATIONAL = System(
    lang="uz",
    name="national",
    title="Uzbek Latin alphabet (1995)",
    sources=(
        "Law of the Republic of Uzbekistan 'On introducing the Uzbek alphabet based on "
        "the Latin script' of 2 September 1993, as amended by the Law of 6 May 1995",
        "Main rules of Uzbek orthography, Cabinet of Ministers resolution No. 339 of "
        "24 August 1995",
    ),
    letters=_frozen(_UZ_LATIN),
    word_initial={"е": "ye"},
    after_vowel={"е": "ye", "ц": "ts"},
    digraphs={"сҳ": "s" + APOSTROPHE + "h"},
    notes=(
        "Е is YE at the start of a word and after a vowel, Ъ or Ь, E elsewhere "
        "(Ергаш → Yergash, Ахмедов → Axmedov).",
        "Ц is TS after a vowel and S elsewhere, as the orthography rules say "
        "(Лицей → Litsey, Цирк → Sirk); names such as Цой are often kept as Tsoy in "
        "practice, which this table does not guess.",
        "С followed by Ҳ is written Sʼh so that it is not read as Ш (Исҳоқ → Isʼhoq).",
        "Oʻ and gʻ are written with U+02BB and the tutuq belgisi with U+02BC; the "
        "variants o' o‘ oʼ g' are read the same by names.normalise.",
        "The 2021 draft alphabet (ō, ḡ, ş, ç) has not been adopted; oʻ gʻ sh ch stay.",
        "Щ and Ы are not letters of the Uzbek Cyrillic alphabet; they fall back to the "
        "Doc 9303 values (SHCH, Y).",
    ),
)

_TK_NATIONAL = System(
    lang="tk",
    name="national",
    title="Turkmen Latin alphabet (1993)",
    sources=(
        "Turkmen Latin alphabet introduced by the Law of Turkmenistan of 12 April 1993, "
        "with the letter shapes Ç Ş Ý Ž Ň that replaced the first ones in the late 1990s",
    ),
    letters=_frozen(_TK_LATIN),
    word_initial={"е": "ýe"},
    after_vowel={"е": "ýe"},
    digraphs={"дж": "j"},
    notes=(
        "Е is ÝE at the start of a word and after a vowel (Караев → Karaýew).",
        "Old records often spell the Turkmen Җ the Russian way, ДЖ; Turkmen words have "
        "no real Д + Ж sequence, so ДЖ is read as Җ → J (Ходжаева → Hojaýewa).",
        "Ц has no letter of its own; we write TS. Ъ and Ь are dropped.",
        "This converts letters only: a russified record (Караев) gives Karaýew, not the "
        "Turkmen form Garaýew.",
    ),
)

_KK_NATIONAL = System(
    lang="kk",
    name="national",
    title="Kazakh Latin alphabet (2021 draft)",
    sources=(
        "Decree of the President of Kazakhstan No. 569 of 19 February 2018 amending "
        "Decree No. 637 of 26 October 2017 (transition of the Kazakh alphabet to the "
        "Latin script)",
        "Revised 31-letter alphabet presented by the Government on 28 January 2021 "
        "(A Ä B D E F G Ğ H I İ J K L M N Ñ O Ö P Q R S Ş T U Ū Ü V Y Z)",
    ),
    letters=_frozen(_KK_LATIN),
    capitals={"i": "İ"},
    notes=(
        "Not yet used in passports or identity cards, which follow Doc 9303 (`icao`); "
        "the transition is planned to end in 2031 and the letters may still change.",
        "І is I ı (dotless small letter) and И, Й are İ i (dotted capital), as in the "
        "2021 alphabet.",
        "The 31 letters have no value of their own for the letters of Russian loanwords "
        "Ё Ц Ч Щ Ъ Ь Э Ю Я; our choices: Ё → İo, Ц → Ts, Ч → Ç (as in the 2019 draft "
        "and the Turkic Latin alphabets of the region), Щ → Şç, Э → E, Ю → İu, "
        "Я → İa, Ъ and Ь dropped. We are not sure these match the final rules.",
    ),
)

_TG_NATIONAL = System(
    lang="tg",
    name="national",
    title="Tajik romanisation in official English-language use",
    sources=(
        "No published national transliteration table could be consulted; this follows "
        "the spelling of names in official English-language use of the Government and "
        "the Ministry of Foreign Affairs of Tajikistan (Qohir Rasulzoda, Sirojiddin "
        "Muhriddin, Bobojon Ghafurov)",
    ),
    letters=_frozen(_TG_LATIN),
    notes=(
        "Provisional: close to Doc 9303 but with Q for Қ, GH for Ғ, Y for Й and "
        "YO YU YA for Ё Ю Я. Whether Tajik passports print Q or K for Қ we could not "
        "confirm; names.match_keys collapses q/k and gh/g.",
        "Ц Щ Ы Ь are not letters of the Tajik alphabet (a joint resolution of the "
        "Ministries of Internal and Foreign Affairs of 23 July 2016, as reported in the "
        "press, bars them from names in passports); they fall back to the Doc 9303 values.",
    ),
)

#: The tables, by language then system. ``national`` of ru and ky is the same
#: object as ``icao``.
TABLES: Mapping[str, Mapping[str, System]] = MappingProxyType(
    {
        "ru": MappingProxyType({"icao": _RU_ICAO, "national": _RU_ICAO}),
        "kk": MappingProxyType({"icao": _KK_ICAO, "national": _KK_NATIONAL}),
        "ky": MappingProxyType({"icao": _KY_ICAO, "national": _KY_ICAO}),
        "tg": MappingProxyType({"icao": _TG_ICAO, "national": _TG_NATIONAL}),
        "tk": MappingProxyType({"icao": _TK_ICAO, "national": _TK_NATIONAL}),
        "uz": MappingProxyType({"icao": _UZ_ICAO, "national": _UZ_NATIONAL}),
    }
)

#: Every Cyrillic letter any ``icao`` table knows, with Doc 9303's value (or
#: ours, for the letters it is silent on): the fallback for stray letters.
ICAO_CYRILLIC: Mapping[str, str] = MappingProxyType(
    {**_ICAO_RUSSIAN, **_ICAO_OTHER_SLAVIC, **_ICAO_CENTRAL_ASIAN}
)

# Vowel letters (and the two signs) after which word-initial values apply.
_VOWELS_AND_SIGNS = frozenset("аеёиоуыэюяәөұүіӣӯўъь")
_STRESS_MARKS = frozenset("\u0300\u0301")


def has_cyrillic(text: str) -> bool:
    """Whether ``text`` contains a Cyrillic letter."""
    return any(_is_cyrillic(ch) for ch in text)


@functools.lru_cache(maxsize=4096)
def _is_cyrillic(ch: str) -> bool:
    return ch.isalpha() and unicodedata.name(ch, "").startswith("CYRILLIC ")


@functools.lru_cache(maxsize=1024)
def _without_stress(text: str) -> str:
    """``text`` in NFC without the stress marks (U+0300, U+0301) of its Cyrillic letters,
    also where NFC would make one letter of the two (е with a grave is ѐ, и with a
    grave ѝ, letters no table has), so that a stressed vowel reads as the vowel (Uzbek
    ц after a vowel is "ts" in Ли́цей as in Лицей)."""
    out: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFD", text):
        if ch in _STRESS_MARKS and _is_cyrillic(base):
            continue
        if not unicodedata.combining(ch):
            base = ch
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _system(lang: str, system: str) -> System:
    try:
        return TABLES[lang][system]
    except KeyError:
        raise ValueError(
            f"No transliteration for lang={lang!r}, system={system!r}; "
            f"languages: {', '.join(LANGUAGES)}; systems: {', '.join(SYSTEMS)}."
        ) from None


def _value(letter: str, table: System) -> str | None:
    for mapping in (table.letters, TABLES[table.lang]["icao"].letters, ICAO_CYRILLIC):
        if letter in mapping:
            return mapping[letter]
    return None


def _cased(value: str, *, capital: bool, all_caps: bool, table: System) -> str:
    if not capital or not value:
        return value
    first = table.capitals.get(value[0], value[0].upper())
    if not all_caps:
        return first + value[1:]
    return first + "".join(table.capitals.get(ch, ch.upper()) for ch in value[1:])


def _all_caps(text: str, start: int, end: int) -> bool:
    """Whether the capital at ``text[start]`` is part of an all-capital word.

    The next letter decides; at the end of a word the previous letter does.
    A one-letter word counts as capitalised, not all capitals.
    """
    if end < len(text) and text[end].isalpha():
        return text[end].isupper()
    return start > 0 and text[start - 1].isalpha() and text[start - 1].isupper()


def to_latin(text: str, lang: str, system: str = "icao", *, keep_unknown: bool = False) -> str:
    """Transliterate the Cyrillic letters of ``text`` for language ``lang``.

    ``lang`` is an ISO 639-1 code of ``LANGUAGES``; ``system`` is ``icao``
    or ``national``. Other characters are kept as they are. Raises
    ``ValueError`` for an unknown language or system and
    ``UnknownLetterError`` for a Cyrillic letter no table knows, unless
    ``keep_unknown`` (for matching, which must take any input) keeps it.
    """
    table = _system(lang, system)
    text = _without_stress(text)
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if not _is_cyrillic(ch):
            out.append(ch)
            i += 1
            continue
        lower = ch.lower()
        pair = text[i : i + 2].lower()
        previous = text[i - 1].lower() if i > 0 else ""
        if len(pair) == 2 and pair in table.digraphs:
            value, end = table.digraphs[pair], i + 2
        elif not previous.isalpha() and lower in table.word_initial:
            value, end = table.word_initial[lower], i + 1
        elif previous in _VOWELS_AND_SIGNS and lower in table.after_vowel:
            value, end = table.after_vowel[lower], i + 1
        else:
            found = _value(lower, table)
            if found is None and keep_unknown:
                found = lower
            if found is None:
                raise UnknownLetterError(
                    f"No transliteration for U+{ord(ch):04X} {unicodedata.name(ch, '')}."
                )
            value, end = found, i + 1
        out.append(
            _cased(
                value,
                capital=ch.isupper(),
                all_caps=_all_caps(text, i, end),
                table=table,
            )
        )
        i = end
    return "".join(out)


# --- the machine-readable zone --------------------------------------------------

#: Latin letters Doc 9303 Part 3 Section 6 transliterates to something other
#: than their base letter. Where it offers a choice (Ä → AE or A, Å → AA or A,
#: Ö → OE or O, Ü → UE, UXX or U, Ñ → N or NXX) we take the single letter: in
#: Turkic alphabets these are vowels of their own, not German umlauts, and the
#: single letter agrees with what the ``icao`` tables give for Ә Ө Ү Ң.
#: Every other letter loses its diacritics (É → E, Ş → S, Ž → Z, Ý → Y).
MRZ_LATIN: Mapping[str, str] = MappingProxyType(
    {
        "Ä": "A", "Å": "A", "Ö": "O", "Ü": "U", "Ñ": "N",
        "Æ": "AE", "Œ": "OE", "Ø": "OE", "ẞ": "SS", "ß": "SS", "Þ": "TH",
        "Ð": "D", "Đ": "D", "Ħ": "H", "Ł": "L", "Ŋ": "N", "Ĳ": "IJ", "ı": "I",
    }
)  # fmt: skip
_MRZ_DROPPED = frozenset("'\u2018\u2019\u02bb\u02bc`\u00b4.,")
_MRZ_SEPARATORS = re.compile(r"[\s\-\u2010\u2011]+")
_MRZ_FORM = re.compile(r"[A-Z<]*", re.ASCII)


def mrz(text: str, lang: str = "ru") -> str:
    """The MRZ form of one name part (surname, or given names) per Doc 9303.

    Cyrillic is first transliterated with the ``icao`` table of ``lang``.
    Letters become capitals without diacritics (``MRZ_LATIN`` lists the ones
    that are not simply stripped); apostrophes, full stops and commas are
    dropped (D'Artagnan → DARTAGNAN); spaces and hyphens become one filler
    ``<`` each run. The surname/given-name separator ``<<`` and padding to the
    field's length are the caller's. Raises ``ValueError`` if something other
    than letters and those separators is left (digits, other scripts).
    """
    if has_cyrillic(text):
        text = to_latin(text, lang, "icao")
    letters: list[str] = []
    for ch in unicodedata.normalize("NFC", text).strip():
        if ch in _MRZ_DROPPED:
            continue
        special = MRZ_LATIN.get(ch) or MRZ_LATIN.get(ch.upper())
        if special is not None:
            letters.append(special)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        letters.append(base.upper())
    result = _MRZ_SEPARATORS.sub("<", "".join(letters).strip()).strip("<")
    if not _MRZ_FORM.fullmatch(result):
        stray = sorted({c for c in result if not ("A" <= c <= "Z" or c == "<")})
        shown = ", ".join(f"U+{ord(c):04X}" for c in stray)
        raise ValueError(f"No MRZ form for {shown}.")
    return result


# --- documentation --------------------------------------------------------------

_ALPHABETS: Mapping[str, str] = MappingProxyType(
    {
        "ru": "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        "kk": "аәбвгғдеёжзийкқлмнңоөпрстуұүфхһцчшщъыіьэюя",
        "ky": "абвгдеёжзийклмнңоөпрстуүфхцчшщъыьэюя",
        "tg": "абвгғдеёжзиӣйкқлмнопрстуӯфхҳчҷшъэюя",
        "tk": "абвгдеёжҗзийклмнңоөпрстуүфхцчшщъыьэәюя",
        "uz": "абвгдеёжзийклмнопрстуфхцчшъьэюяўқғҳ",
    }
)


def _cell(value: str) -> str:
    return f"`{value}`" if value else "—"


def _markdown_language(lang: str) -> list[str]:
    icao, national = TABLES[lang]["icao"], TABLES[lang]["national"]
    same = icao is national
    lines = [f"## {_LANGUAGE_NAMES[lang]} (`{lang}`)", ""]
    header = "| letter | icao |" if same else "| letter | icao | national |"
    lines += [header, "|---|---|" if same else "|---|---|---|"]
    alphabet = _ALPHABETS[lang]
    # Letters outside the language's alphabet that its tables still map (Щ in Uzbek).
    extra = sorted({*icao.letters, *national.letters} - set(alphabet))
    for letter in alphabet + "".join(extra):
        row = f"| {letter.upper()} {letter} | {_cell(_value(letter, icao) or '')} |"
        if not same:
            row += f" {_cell(_value(letter, national) or '')} |"
        lines.append(row)
    lines.append("")
    for table in (icao,) if same else (icao, national):
        lines.append(f"**{table.name}: {table.title}.**")
        if same:
            lines.append("`national` is the same table.")
        rules = [
            *(f"{k.upper()} at the start of a word: `{v}`" for k, v in table.word_initial.items()),
            *(f"{k.upper()} after a vowel, Ъ or Ь: `{v}`" for k, v in table.after_vowel.items()),
            *(f"{k.upper()}: `{v}`" for k, v in table.digraphs.items()),
            *(f"capital of `{k}`: `{v}`" for k, v in table.capitals.items()),
        ]
        if rules:
            lines.append("Special rules: " + "; ".join(rules) + ".")
        lines.append("")
        lines += [f"- Source: {source}." for source in table.sources]
        lines += [f"- {note}" for note in table.notes]
        lines.append("")
    return lines


_PREAMBLE = """\
# Transliteration of names

<!-- Generated by `python -m schemas.translit --markdown > docs/transliteration.md`
from the tables in schemas/translit.py; tests/test_translit.py fails when this
page and the tables differ. Edit the tables, not this page. -->

Every name in an xb1 message keeps its `original` spelling and script and
carries a Latin form, `latin` (`schemas.common.NameSchema`). `schemas/translit.py`
produces that Latin form from the Cyrillic alphabets of Russian, Kazakh,
Kyrgyz, Tajik, Turkmen and Uzbek, in two systems:

- `icao`: ICAO Doc 9303, *Machine Readable Travel Documents*, 8th edition
  (2021), Part 3, Section 6, transliteration of Cyrillic characters. Doc 9303
  lists the Russian letters plus І and Ў (and letters of other Slavic
  alphabets); it is silent on Ә Ғ Җ Қ Ң Ө Ұ Ү Һ Ҳ Ҷ Ӣ Ӯ. Our values for those
  are marked in the notes of each language.
- `national`: the state's own Latin writing (Uzbek 1995, Turkmen 1993,
  Kazakh 2021 draft, Tajik official usage). Russian and Kyrgyz passports use
  the Doc 9303 table, so there `national` is `icao`.

```python
from schemas.translit import mrz, to_latin

to_latin("Ўғилой Тошматова", "uz", "national")  # 'Oʻgʻiloy Toshmatova'
to_latin("Ўғилой Тошматова", "uz")              # 'Ugiloi Toshmatova'
mrz("Ўғилой", "uz")                             # 'UGILOI'
```

Rules that hold for every table:

- Values are lower case; a capital is written `Sh` in a capitalised word
  and `SH` in an all-capital word. Characters that are not Cyrillic are kept.
- A letter missing from a table (a Russian letter in an Uzbek name) takes
  the language's `icao` value, then the value of any `icao` table; a Cyrillic
  letter none knows is an error, never copied into `latin`.
- Uzbek and Tajik apostrophes are U+02BB (oʻ, gʻ) and U+02BC (ʼ), which
  `LatinText` accepts; U+2018 (‘), often typed for oʻ, is not accepted there.
- Stress marks (U+0300, U+0301) on Cyrillic letters are dropped.

## The machine-readable zone

`mrz(text, lang)` gives one name part as it appears in the MRZ: capitals A–Z
and the filler `<`. Cyrillic is transliterated with the `icao` table first.
Latin letters with diacritics follow Doc 9303 Part 3 Section 6; where it
offers a choice we take the single letter: Ä → A (not AE), Å → A, Ö → O,
Ü → U (not UE or UXX), Ñ → N (not NXX). In the Turkic alphabets these are
vowels of their own, not German umlauts, and the single letter agrees with
what the `icao` tables give for Ә Ө Ү Ң. Letters that are not simply their
base letter plus an accent:

| letter | MRZ |
|---|---|
"""

_POSTSCRIPT = """\
Other letters lose their diacritics (É → E, Ş → S, Ž → Z, Ý → Y, İ → I).
Apostrophes, full stops and commas are dropped; spaces and hyphens become a
single `<`. The `<<` between surname and given names and the padding are
the caller's.

"""


def markdown() -> str:
    """The page ``docs/transliteration.md``, generated from ``TABLES``."""
    lines = [_PREAMBLE.rstrip("\n")]
    lines += [f"| {k} | `{v}` |" for k, v in MRZ_LATIN.items()]
    lines += ["", _POSTSCRIPT.rstrip("\n"), ""]
    for lang in LANGUAGES:
        lines += _markdown_language(lang)
    # names imports this module, so it is imported here, not at the top.
    from schemas.names import markdown_section

    lines.append(markdown_section())
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m schemas.translit --markdown > docs/transliteration.md")
    sys.stdout.write(markdown())
