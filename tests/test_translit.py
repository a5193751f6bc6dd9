"""Transliteration tables, the MRZ form, and the generated documentation page."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError

from schemas.common import LatinText, NameSchema
from schemas.translit import (
    LANGUAGES,
    SYSTEMS,
    TABLES,
    UnknownLetterError,
    has_cyrillic,
    markdown,
    mrz,
    to_latin,
)

ROOT = Path(__file__).resolve().parent.parent
TC = "\u02bb"  # the Uzbek oʻ / gʻ sign
AP = "\u02bc"  # tutuq belgisi

# (original, lang, system, expected); each checked by hand against the tables.
NAMES = [
    # Russian: Doc 9303 as in passports since 2013.
    ("Щербаков", "ru", "icao", "Shcherbakov"),
    ("Ёлкина", "ru", "icao", "Elkina"),
    ("Дарья Ильинична", "ru", "icao", "Daria Ilinichna"),
    ("Юрий Алексеевич Подъячев", "ru", "icao", "Iurii Alekseevich Podieiachev"),
    ("Евгений Цой", "ru", "icao", "Evgenii Tsoi"),
    ("Щербаков", "ru", "national", "Shcherbakov"),
    # Kazakh
    ("Нұрсұлтан Әбішұлы Қожахметов", "kk", "icao", "Nursultan Abishuly Kozhakhmetov"),
    ("Нұрсұлтан Әбішұлы Қожахметов", "kk", "national", "Nūrsūltan Äbışūly Qojahmetov"),
    ("Қасым-Жомарт Тоқаев", "kk", "icao", "Kasym-Zhomart Tokaev"),
    ("Қасым-Жомарт Тоқаев", "kk", "national", "Qasym-Jomart Toqaev"),
    ("Гүлнәр Сейітқызы Ыбырайқызы", "kk", "national", "Gülnär Seiıtqyzy Ybyraiqyzy"),
    ("Ирина Ілияс", "kk", "national", "İrina Iliias"),
    ("ИРИНА ІЛИЯС", "kk", "national", "İRİNA ILİİAS"),
    ("Һарун Ғалымжан Жаңбыршы", "kk", "icao", "Harun Galymzhan Zhanbyrshy"),
    # Kyrgyz
    ("Айгүл Өмүрбекова", "ky", "icao", "Aigul Omurbekova"),
    ("Чыңгыз Айтматов", "ky", "icao", "Chyngyz Aitmatov"),
    ("Садыр Жапаров", "ky", "national", "Sadyr Zhaparov"),
    # Tajik
    ("Ҷамшед Раҳмонов", "tg", "icao", "Jamshed Rahmonov"),
    ("Ҷамшед Раҳмонов", "tg", "national", "Jamshed Rahmonov"),
    ("Бибиҳафиза Шарифзода", "tg", "icao", "Bibihafiza Sharifzoda"),
    ("Қоҳир Расулзода", "tg", "icao", "Kohir Rasulzoda"),
    ("Қоҳир Расулзода", "tg", "national", "Qohir Rasulzoda"),
    ("Бобоҷон Ғафуров", "tg", "national", "Bobojon Ghafurov"),
    ("Саъдӣ Шеролӣ", "tg", "icao", "Sadi Sheroli"),
    ("Саъдӣ Шеролӣ", "tg", "national", f"Sa{AP}di Sheroli"),
    ("Гулрухсор Ӯроқова", "tg", "national", "Gulrukhsor Uroqova"),
    # Turkmen Cyrillic (old records)
    ("Огулджерен Ходжаева", "tk", "icao", "Oguldzheren Khodzhaeva"),
    ("Огулджерен Ходжаева", "tk", "national", "Oguljeren Hojaýewa"),
    ("Огулҗерен Хоҗаева", "tk", "national", "Oguljeren Hojaýewa"),
    ("Гурбангулы Бердимухамедов", "tk", "national", "Gurbanguly Berdimuhamedow"),
    ("Ерназар Караев", "tk", "national", "Ýernazar Karaýew"),
    ("Айнабат Өвезова", "tk", "national", "Aýnabat Öwezowa"),
    ("Мәхри Сапармырадова", "tk", "icao", "Makhri Saparmyradova"),
    ("Җемал Ңурлыев", "tk", "national", "Jemal Ňurlyýew"),
    # Uzbek Cyrillic
    ("Ўғилой Тошматова", "uz", "national", f"O{TC}g{TC}iloy Toshmatova"),
    ("ЎҒИЛОЙ ТОШМАТОВА", "uz", "national", f"O{TC}G{TC}ILOY TOSHMATOVA"),
    ("Ўғилой Тошматова", "uz", "icao", "Ugiloi Toshmatova"),
    ("Шавкат Мирзиёев", "uz", "national", "Shavkat Mirziyoyev"),
    ("Шавкат Мирзиёев", "uz", "icao", "Shavkat Mirzieev"),
    ("Хуршид Ергашев", "uz", "national", "Xurshid Yergashev"),
    ("Исҳоқ Маъруфов", "uz", "national", f"Is{AP}hoq Ma{AP}rufov"),
    ("Йўлдошев", "uz", "national", f"Yo{TC}ldoshev"),
    ("Юлдашев", "uz", "national", "Yuldashev"),
    ("Лицей Цирк", "uz", "national", "Litsey Sirk"),
    ("Щукин", "uz", "national", "Shchukin"),  # a Russian letter: Doc 9303 value
]


@pytest.mark.parametrize(("original", "lang", "system", "expected"), NAMES)
def test_real_names(original: str, lang: str, system: str, expected: str) -> None:
    assert to_latin(original, lang, system) == expected


@pytest.mark.parametrize(("original", "lang", "system", "expected"), NAMES)
def test_real_names_make_valid_name_objects(
    original: str, lang: str, system: str, expected: str
) -> None:
    body = {"original": original, "script": "Cyrl", "latin": expected, "lang": lang}
    assert NameSchema().load(body) == body


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("Ш", "Sh"),  # a one-letter word is capitalised, not all capitals
        ("ШУКУР", "SHUKUR"),
        ("Шукур", "Shukur"),
        ("шукур", "shukur"),
        ("ЮЛ", "IUL"),
        ("ЮЛДАШЕВ-Щукин", "IULDASHEV-Shchukin"),
        ("МакШейн", "MakShein"),
        ("О'Щ", "O'Shch"),
    ],
)
def test_capitals_follow_the_word(original: str, expected: str) -> None:
    assert to_latin(original, "ru") == expected


def test_other_characters_pass_through() -> None:
    assert to_latin("Анна-Maria (2), д'Артаньян", "ru") == "Anna-Maria (2), d'Artanian"


def test_decomposed_input_and_stress_marks() -> None:
    assert to_latin("Аи\u0306да\u0301р", "ru") == "Aidar"  # и + breve = й; stress dropped


@pytest.mark.parametrize(
    ("original", "lang", "system", "expected"),
    [
        # A grave on е or и is one letter after NFC (ѐ, ѝ), which no table has.
        ("Се\u0300ргей", "ru", "icao", "Sergei"),
        ("Ни\u0300на", "ru", "icao", "Nina"),
        ("НИ\u0300НА", "ru", "icao", "NINA"),
        ("\u0450лка", "ru", "icao", "elka"),
        # A stressed vowel is a vowel for what follows it.
        ("Ли\u0301цей", "uz", "national", "Litsey"),
        ("Ма\u0301цуев", "uz", "national", "Matsuyev"),
        # Marks on other letters stay.
        ("Café a\u0301", "ru", "icao", "Café \u00e1"),
    ],
)
def test_stress_marks_are_dropped_whatever_form_they_take(
    original: str, lang: str, system: str, expected: str
) -> None:
    assert to_latin(original, lang, system) == expected


def test_unknown_letter_is_an_error_not_copied() -> None:
    with pytest.raises(UnknownLetterError, match="U\\+0462"):
        to_latin("Ѣлена", "ru")
    assert to_latin("Ѣлена", "ru", keep_unknown=True) == "Ѣlena"


@pytest.mark.parametrize(("lang", "system"), [("be", "icao"), ("uz", "gost"), ("UZ", "icao")])
def test_unknown_language_or_system(lang: str, system: str) -> None:
    with pytest.raises(ValueError, match="No transliteration"):
        to_latin("Анна", lang, system)


def test_word_initial_rules_apply_only_at_word_start_and_after_vowels() -> None:
    assert to_latin("Ергаш Ахмедов Раъно Маърифат", "uz", "national") == (
        f"Yergash Axmedov Ra{AP}no Ma{AP}rifat"
    )
    assert to_latin("Ерлан Мейрам", "kk", "icao") == "Erlan Meiram"  # ICAO has no YE
    assert to_latin("Ер-Ерназар", "tk", "national") == "Ýer-Ýernazar"


def test_russian_and_kyrgyz_national_is_the_icao_table() -> None:
    assert TABLES["ru"]["national"] is TABLES["ru"]["icao"]
    assert TABLES["ky"]["national"] is TABLES["ky"]["icao"]
    for lang in ("kk", "tg", "tk", "uz"):
        assert TABLES[lang]["national"] is not TABLES[lang]["icao"]


def test_icao_values_are_plain_ascii_letters() -> None:
    for lang in LANGUAGES:
        for value in TABLES[lang]["icao"].letters.values():
            assert re.fullmatch("[a-z]*", value), (lang, value)


def test_icao_tables_agree_with_doc_9303_on_the_russian_letters() -> None:
    russian = TABLES["ru"]["icao"].letters
    for lang in LANGUAGES:
        table = TABLES[lang]["icao"].letters
        for letter, value in russian.items():
            if letter != "ъ":  # dropped for Tajik and Uzbek, see the notes
                assert table[letter] == value, (lang, letter)


# --- property tests ------------------------------------------------------------

_LATIN_TEXT = LatinText(max_length=10_000)
_SEPARATORS = st.sampled_from([" ", "-", " - "])


def _alphabet(lang: str) -> str:
    letters = set(TABLES[lang]["icao"].letters) | set(TABLES[lang]["national"].letters)
    return "".join(sorted(letters | {ch.upper() for ch in letters}))


def _cyrillic_names(lang: str) -> st.SearchStrategy[str]:
    word = st.text(alphabet=_alphabet(lang), min_size=1, max_size=12)
    return st.lists(st.tuples(word, _SEPARATORS), min_size=1, max_size=4).map(
        lambda parts: "".join(w + s for w, s in parts)[: -len(parts[-1][1])]
    )


def _name_with_a_latin_letter(lang: str) -> st.SearchStrategy[str]:
    # A word of signs only (Ъ Ь) transliterates to nothing; LatinText needs a letter.
    return st.tuples(st.sampled_from("АБВКМНОСТ"), _cyrillic_names(lang)).map("".join)


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("lang", LANGUAGES)
@given(data=st.data())
def test_output_is_latin_text(lang: str, system: str, data: st.DataObject) -> None:
    name = data.draw(_name_with_a_latin_letter(lang))
    latin = to_latin(name, lang, system)
    assert not has_cyrillic(latin)
    assert _LATIN_TEXT.deserialize(latin) == latin


@pytest.mark.parametrize("lang", LANGUAGES)
@given(data=st.data())
def test_mrz_form_of_any_name(lang: str, data: st.DataObject) -> None:
    name = data.draw(_name_with_a_latin_letter(lang))
    form = mrz(name, lang)
    assert re.fullmatch("[A-Z]+(<[A-Z]+)*", form), form
    # the national spelling has the same MRZ charset
    assert re.fullmatch("[A-Z<]*", mrz(to_latin(name, lang, "national")))


@given(
    st.text(
        alphabet=st.characters(codec="latin-1", categories=["Lu", "Ll"], exclude_characters="µ"),
        min_size=1,
    )
)
def test_mrz_of_latin_1_letters(text: str) -> None:
    assert re.fullmatch("[A-Z]*", mrz(text))


def test_latin_text_rejects_what_we_avoid() -> None:
    # U+2018 is often typed for oʻ; the schema refuses it, so we never write it.
    with pytest.raises(ValidationError):
        _LATIN_TEXT.deserialize("O\u2018g\u2018iloy")


# --- MRZ -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("Ўғилой", "uz", "UGILOI"),
        ("Ҷамшед Раҳмонов", "tg", "JAMSHED<RAHMONOV"),
        ("Нұрсұлтан Әбішұлы", "kk", "NURSULTAN<ABISHULY"),
        ("Щербаков", "ru", "SHCHERBAKOV"),
        (f"O{TC}g{TC}iloy", "uz", "OGILOY"),
        ("D'Artagnan", "ru", "DARTAGNAN"),
        ("Marie-Élise  de la Tour", "ru", "MARIE<ELISE<DE<LA<TOUR"),
        ("Müller", "ru", "MULLER"),
        ("Åsa Öberg", "ru", "ASA<OBERG"),
        ("Ñúñez", "ru", "NUNEZ"),
        ("Straße", "ru", "STRASSE"),
        ("Øster Æbelø", "ru", "OESTER<AEBELOE"),
        ("Þórsdóttir", "ru", "THORSDOTTIR"),
        ("Łukasz Đorđević", "ru", "LUKASZ<DORDEVIC"),
        ("Ýazgulyýew Şükür Çaryýew Žanna Ňurly", "tk", "YAZGULYYEW<SUKUR<CARYYEW<ZANNA<NURLY"),
        ("Nūrsūltan Äbışūly Qojahmetov İrina", "kk", "NURSULTAN<ABISULY<QOJAHMETOV<IRINA"),
        ("  -Abd. al-Rahman- ", "ru", "ABD<AL<RAHMAN"),
    ],
)
def test_mrz(text: str, lang: str, expected: str) -> None:
    assert mrz(text, lang) == expected


@pytest.mark.parametrize("text", ["Agent 007", "李", "Ali/Vali"])
def test_mrz_refuses_what_has_no_mrz_form(text: str) -> None:
    with pytest.raises(ValueError, match="No MRZ form"):
        mrz(text)


# --- the documentation page ------------------------------------------------------


def test_checked_in_page_matches_the_tables() -> None:
    page = (ROOT / "docs" / "transliteration.md").read_text(encoding="utf-8")
    assert page == markdown(), (
        "docs/transliteration.md is out of date: run "
        "python -m schemas.translit --markdown > docs/transliteration.md"
    )


def test_page_generator_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "schemas.translit", "--markdown"],
        capture_output=True,
        cwd=ROOT,
        check=True,
    )
    assert result.stdout.decode("utf-8") == markdown()


def test_page_lists_every_letter_and_source() -> None:
    page = markdown()
    for lang in LANGUAGES:
        for system in SYSTEMS:
            table = TABLES[lang][system]
            for source in table.sources:
                assert source in page
            for letter in table.letters:
                assert f"| {letter.upper()} {letter} | " in page
    assert "8th edition (2021), Part 3, Section 6" in page
