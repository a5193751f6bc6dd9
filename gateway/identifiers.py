"""The identifiers of the people and things in a message, for originator control of
H2 data (gateway/onward.py): what counts as the same person, phone, account, handle,
address, document or vehicle.

:func:`identifier_keys` gives hashed keys. A received H2 message's keys are
recorded; a message leaving is looked up with ``outgoing=True``. The two sets are
the same except for parts of names and for words in text, so that text is compared
with names, and with text only by an initial and a word (by its words, any common
phrase would meet):

* every name's whole match keys (``schemas.names``: spelling and transliteration
  variants meet);
* for a person (not an organisation, whose name is compared whole), each pair of
  the words of one of its names, and each whole word with the initial of another,
  so that the name with a word added or dropped, shortened to an initial, or split
  into two names of the person still meets. Kinds of keys:

  ==============  =====================================  ==========================
  kind            of                                     looked up by a message
                                                         leaving, for
  ==============  =====================================  ==========================
  name-pair       two whole words of an H2 name          two whole words of a name,
                                                         or in its text up to one
                                                         word apart
  name-expanded   an H2 name's word's initial + another  an initial + a word of a
                                                         name, or in text
  name-initial    an H2 name's initial + another word    a name's word's initial +
                                                         another word; an initial +
                                                         a word, in a name or text
  text-pair       two whole capitalised words of H2      two whole words of a name
                  text up to one word apart
  text-expanded   a word's initial + the next, in H2     an initial + a word of a
                  text                                   name, or in text
  text-initial    an initial + its word, in H2 text      a name's word's initial +
                                                         another word; an initial +
                                                         a word of a name
  lower-pair      two words next to each other in H2     two whole words of a name
                  text, one at least in lower case
  ==============  =====================================  ==========================

  An initial is a name's word of one letter (or a digraph Ш, Ч, Ц, Я, Ю, Ё stand
  for), and in text a token written as one: a capital (or two letters for one sound)
  and a dot ("A.", "Sh."). Text is read in runs of capitalised words (:func:`_runs`),
  each word also as the nominative it may be a case of (:func:`_case_forms`); a
  father's name makes no pair (:func:`_patronymics`). Text is also read for two
  words next to each other of which one is in lower case (:func:`_lower_case_pairs`):
  recorded as lower-pair, looked up as name-pair.
* document numbers with their issuing state; numbers that identify a person or a
  thing (documents, accounts, cards, IBANs, VINs, personal and registration numbers)
  without their kind or state, also in text (:func:`_number`); phone numbers, also as
  dialled at home;
  account numbers; e-mail addresses; messenger and social accounts by their handle;
  websites; vehicles; organisations' registration numbers; phone numbers, e-mail
  addresses, "@handles" and addresses anywhere in text.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import re
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from schemas.common import json_objects
from schemas.names import match_keys, readings, visible

_Found = set[tuple[str, str]]  # (kind, value), hashed at the end


def identifier_keys(body: Any, *, outgoing: bool = False) -> set[bytes]:
    """Hashed identifiers of the people and things anywhere in ``body``: as recorded
    for a received H2 message, or with ``outgoing`` as looked up for a message leaving."""
    return {_key(kind, value) for kind, value in identifiers(body, outgoing=outgoing)}


def identifiers(body: Any, *, outgoing: bool = False) -> set[tuple[str, str]]:
    """:func:`identifier_keys` before hashing: (kind, value) pairs."""
    found: _Found = set()
    for node in json_objects(body):
        names = node.get("names")
        if isinstance(names, list):
            _names(found, names, person="type" not in node, outgoing=outgoing)
        number, country = node.get("number"), node.get("issuing_country")
        kind = node.get("type") if isinstance(node.get("type"), str) else None
        if isinstance(number, str) and not _number_like(number):
            number = None  # "unknown", "б/н", "**** 1234": no number
        if isinstance(number, str) and isinstance(country, str):
            found.add(("document", country + ":" + _DOC_NOISE.sub("", number).upper()))
            found.add(("document", country + ":" + _document(number)))
        if isinstance(number, str):
            _number(found, _document(number))
        value = node.get("value")
        if isinstance(value, str):
            _channel(found, kind, value)
        if isinstance(node.get("iban"), str):
            found.add(("account", node["iban"]))
            _number(found, _document(node["iban"]))
        if isinstance(number, str) and country is None:
            # Any account number (bank, card, crypto, mobile money), with or without the
            # institution (or beside its IBAN): leaving either out must not hide it; one
            # that is a phone number (a mobile-money wallet) is that number too.
            found.add(("account", _DOC_NOISE.sub("", number).upper()))
            if kind == "mobile-money":
                found.update(("phone", phone) for phone in _phones(number))
        # A vehicle's plate and VIN, an organisation's registration number: with or
        # without the country, which a message may leave out, and for a registration
        # number also without the letters before it ("BIN 180240012345").
        for member, key in _NUMBERS:
            written = node.get(member)
            if isinstance(written, str) and _number_like(written):
                found.add((key, _document(written)))
                digits = "".join(_DIGIT_RUN.findall(unicodedata.normalize("NFKC", written)))
                if key == "organisation" and len(digits) >= 6:
                    found.add((key, digits))
                _number(found, _document(written))
                if key == "organisation":
                    _number(found, digits)
    structured = {item for item in found if item[0] == "number"}
    for text in _strings(body, echoes=outgoing):
        _text(found, text, outgoing=outgoing)
    if outgoing:
        return found  # all of it: a reference is free text, and could hide anything
    # An H2 message's case numbers (and a case response's echo of the requester's) are
    # no one's data, wherever else the message repeats them: not recorded (the rest of
    # its own reference, a name or a phone number written there, is; an echo of the
    # other party's is not recorded at all).
    references: _Found = set()
    for text in _references(body):
        _text_numbers(references, text, outgoing=True)
    if references:
        cases = {digits for _, value in references if len(digits := _only_digits(value)) >= 9}
        found = {
            item
            for item in found
            if item[0] != "number"
            or item in structured
            or item not in references
            and not any(case in item[1] for case in cases)
        }
    return _bounded(found, structured)


#: Keys of parts of names and words of text recorded for one message at most: a
#: message of a hundred long names for each of forty people (0.7 MB) has 300,000.
MOST_PART_KEYS = 20_000
#: Numbers read in text recorded for one message at most: a bank statement pasted into a
#: summary (100,000 groups of digits) has 400,000.
MOST_TEXT_NUMBERS = 5_000
_PART_KINDS = (
    *("name-pair", "name-expanded", "name-initial"),
    *("text-pair", "text-expanded", "text-initial", "lower-pair"),
)


def _bounded(found: _Found, structured: _Found) -> _Found:
    """``found`` with at most :data:`MOST_PART_KEYS` keys of parts of names and words
    of text (of names first, then of text, each in sort order) and at most
    :data:`MOST_TEXT_NUMBERS` numbers besides the ``structured`` ones (in sort order);
    whole names, numbers of documents and accounts, and addresses all stay."""
    parts = [item for item in found if item[0] in _PART_KINDS]
    if len(parts) > MOST_PART_KEYS:
        parts.sort(key=lambda item: (_PART_KINDS.index(item[0]), item[1]))
        found = (found - set(parts)) | set(parts[:MOST_PART_KEYS])
    numbers = [item for item in found if item[0] == "number" and item not in structured]
    if len(numbers) > MOST_TEXT_NUMBERS:
        kept = heapq.nsmallest(
            MOST_TEXT_NUMBERS,
            numbers,
            key=lambda item: (item[1].isdigit(), item[1]),  # with letters first: documents'
        )
        found = found - set(numbers) | set(kept)
    return found


def _placeholder(value: str) -> bool:
    """Whether ``value`` says that nothing is known ("unknown", "н/д", "нет", "-",
    "0", "___"), or holds no letter or digit but one repeated."""
    written = unicodedata.normalize("NFKC", value).casefold().strip(" .,;:!?-_/()[]'\"")
    compact = _NOT_LETTER_OR_DIGIT.sub("", written)
    return written in PLACEHOLDERS or len(set(compact)) <= 1


def _number_like(value: str) -> bool:
    """A document, account, plate, VIN or registration number: three letters or digits
    or more, a digit among them, not masked ("**** 1234") and no placeholder."""
    compact = _document(value)
    return (
        len(compact) >= 3
        and any("0" <= c <= "9" for c in compact)
        and not any(mask in value for mask in "*•…")
        and not _placeholder(value)
    )


def _key(kind: str, value: str) -> bytes:
    return hashlib.sha256(f"xb1-h2/{kind}/{value}".encode("utf-8", "surrogatepass")).digest()


#: Members holding a number that identifies a thing, and the kind of its key.
_NUMBERS = (("registration", "vehicle"), ("vin", "vin"), ("registration_number", "organisation"))
_DIGIT_RUN = re.compile(r"[0-9]+")
_DOC_NOISE = re.compile(r"[\s./-]+")
_NOT_LETTER_OR_DIGIT = re.compile(r"[\W_]+")
# Letters of Cyrillic and Greek that look like Latin ones, as they are typed into
# document numbers ("АВ1234567" for "AB1234567"), upper case after NFKC.
_LOOK_ALIKE = str.maketrans("АВЕКМНОРСТУХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEKMHOPCTYXIJSABEZHIKMNOPTYX")


def _document(number: str) -> str:
    """A document number as compared: compatibility forms folded (full-width digits),
    upper case, look-alike Cyrillic and Greek letters as the Latin ones, and nothing
    but letters and digits, of any script (spaces, dashes of any kind, "№", dots
    gone; "АГ" and "АБ" stay two series)."""
    # (The numero sign first: compatibility folding would make it the letters "No".)
    folded = unicodedata.normalize("NFKC", number.replace("\u2116", "")).upper()
    folded = folded.translate(_LOOK_ALIKE)
    return _NOT_LETTER_OR_DIGIT.sub("", folded)


#: Members holding a case's or a hit's reference (schemas/case_request.py, …): numbers
#: of cases, not of people or things.
REFERENCE_MEMBERS = frozenset({"reference", "case_reference", "response_reference"})


def _strings(node: Any, *, echoes: bool) -> Iterator[str]:
    """Every string in ``node`` but the names of people and organisations, which
    :func:`_names` reads, and, unless ``echoes``, the other party's reference a message
    repeats (:func:`_echoed`). Member names are the standard's, not data."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(
                value
                for member, value in item.items()
                if member != "names" and (echoes or not _echoed(item, member))
            )
        elif isinstance(item, list):
            stack.extend(item)


def _echoed(node: dict[str, Any], member: str) -> bool:
    """Whether ``member`` of ``node`` repeats the other party's reference: a case
    response's ``case_reference`` (the requester's, beside ``in_reply_to``), a case
    request's hit ``reference`` (the answering member's, beside ``query``)."""
    return (member == "case_reference" and "in_reply_to" in node) or (
        member == "reference" and "query" in node
    )


def _references(body: Any) -> Iterator[str]:
    """The strings of :data:`REFERENCE_MEMBERS` anywhere in ``body``."""
    for node in json_objects(body):
        for member in REFERENCE_MEMBERS:
            if isinstance(node.get(member), str):
                yield node[member]


# ---------------------------------------------------------------- numbers

# A number that identifies a person or a thing, wherever it is written: a document's,
# an account's or card's, an IBAN, a VIN, a personal or registration number (IIN,
# PINFL, BIN). Compared without their kind or country, so that a number told in text
# meets the same number in a document, an account or another text.
_MOST_CHUNKS = 8  # a number in text written in groups: at most this many (an IBAN: 7)
_CHUNK = re.compile(r"[^\W_]+(?:-+[^\W_]+)*")
_ASCENDING = "12345678901234567890"


def _number(found: _Found, compact: str) -> None:
    """``compact`` (as :func:`_document` gives it) as a number, if it may identify:
    letters with six digits or more ("N08154711", "AC4815162", an IBAN, a VIN), or
    nine digits or more (a card, an IIN, a passport of digits). Not one repeated digit,
    digits counting up ("123456789", "AA1234567": examples, not numbers), or a round sum
    ("1 500 000 000")."""
    only_digits = _only_digits(compact)
    letters = len(compact) - len(only_digits)
    if len(only_digits) < (6 if letters else 9) or len(compact) < 7:
        return
    if len(set(only_digits)) <= 1 or _ASCENDING.startswith(only_digits):
        return
    if not letters and only_digits.endswith("00000"):
        return
    found.add(("number", compact))


def _only_digits(text: str) -> str:
    return _NOT_DIGIT.sub("", text)


_NOT_DIGIT = re.compile(r"\D+")


def _text_numbers(found: _Found, text: str, *, outgoing: bool) -> None:
    """Numbers in text (:func:`_number`), also written in groups of up to
    :data:`_MOST_CHUNKS` words or dashed parts: "AC 4815162", "AC–4815162", "4400 4301
    9876 5432", "KZ86 125K ZT50 0410 0100", "ИИН 900101350146", "I-AŞ 481526", "серия
    4512, номер 846273", "AC№4815162", "AC/4815162". A word of letters alone is a
    number's series when it has three capitals at most; "№" and words such as "номер" or
    "No" go between. Every group of words next to each other is tried, as a number may
    stand beside a series, a label or another number, and the numbers inside each
    (:func:`_inner_numbers`); a comma or the end of a sentence ends a group, unless "№"
    or such a word follows. Groups written as a sum ("375 250 000") or as years ("2021
    2022 2023") are none. A word with marks other than a dash is read only for the
    numbers inside it ("ИИН:900101350146"; "01.01.2024-31.12.2024" and "1275300.50" have
    none). Unless ``outgoing``, the word after one that says a case's number follows
    ("ЕРДР", "исх.", or "дело" and "№"), and the rest of a case's number after it, are
    no one's number (a message leaving is looked up with it: a cue word written before an H2
    number must not hide it)."""
    parts: list[_Part] = []  # the group's words and dashed parts
    cue = False  # the next word is a case's number
    within = False  # and the words before it since the cue were
    noun = False  # the last word was "дело", "case": a case's number if "№" follows
    broken = False  # a comma or a sentence's end since the last part
    for raw in visible(text).translate(_NUMBER_MARKS).split():
        if raw.lstrip(_OPENING).startswith("+"):
            parts, cue, noun, broken = [], False, False, False  # a country code: a phone
            continue
        token = raw.strip(_OPENING + _CLOSING + "-№")
        folded = token.casefold()
        if not token or folded in _NUMBER_WORDS:
            broken = False  # "серия 4512, номер 846273": the number goes on
            if noun and ("№" in raw or token):
                cue, within, noun = not outgoing, False, False  # "по делу № …", "case no. …"
            continue
        if broken:
            parts, broken, cue, noun = [], False, False, False
        series = False
        if folded in _CASE_CUES:
            parts, cue, within, noun = [], not outgoing, False, False
        elif folded in _CASE_NOUNS:
            parts, noun = [], True
        else:
            # A case's number may be written in groups ("№ 2527 5003 1000 127"): after
            # its first word, the cue holds while the words are digits.
            cued = cue and (not within or token.replace("-", "").isdigit())
            cue, within, noun = cued, cued, False
            if not cued and parts and parts[-1].cued:
                parts = []  # no number of a case's number and what follows it
            whole = _CHUNK.fullmatch(token) is not None
            series = whole and token.isupper() and len(token.replace("-", "")) <= 3
            numeric = any(c.isdigit() for c in token) and not any(c.islower() for c in token)
            if whole and (series or numeric):
                for part in _DASHES_BETWEEN.split(token):
                    parts = [*parts[1 - _MOST_CHUNKS :], _part(part, cued)]
                    for first in range(len(parts)):
                        _group_numbers(found, parts[first:])
            else:
                parts = []
                if not cued:
                    _inner_numbers(found, token)
        if raw.endswith((",", ";", ".", "!", "?")) and not (
            raw.endswith(".") and (series or folded in _ABBREVIATED)
        ):
            broken = True


class _Part(NamedTuple):
    written: str
    compact: str  # as _document gives it
    digits: int
    cued: bool  # the word after a case's number cue


def _part(written: str, cued: bool) -> _Part:
    compact = _document(written)
    return _Part(written, compact, len(_only_digits(compact)), cued)


def _group_numbers(found: _Found, group: list[_Part]) -> None:
    """The number a group of parts of text makes, and those inside it."""
    if sum(part.digits for part in group) < 6 or all(part.cued for part in group):
        return
    words = [part.written for part in group]
    figures = words[next((i for i, w in enumerate(words) if not w.isalpha()), len(words)) :]
    if len(figures) > 1 and all(figure.isdigit() for figure in figures):
        if 1 <= len(figures[0]) <= 3 and all(len(f) == 3 for f in figures[1:]):
            if figures[-1] == "000" or len(figures) < len(words):
                return  # a sum: "375 250 000"; and a word before part of one: "В 375 250"
        if all(_YEAR.fullmatch(figure) for figure in figures):
            return  # years: "2021 2022 2023"
    joined = "".join(part.compact for part in group)
    _number(found, joined)
    if any(not (word.isdigit() or word.isalpha()) for word in words):
        _inner_numbers(found, joined)  # "AC 4815162KZ"


_YEAR = re.compile(r"(?:19|20)[0-9]{2}")
_DASHES_BETWEEN = re.compile(r"-+")
#: Dashes other than "-" (hyphens, en and em dashes, minus, their small and full-width
#: forms), as people write them in numbers and names.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
# "№" (and what is written for it) stands apart as a word of its own; any dash, also
# two-em and three-em, is "-"; a slash is a space.
_NUMBER_MARKS = str.maketrans(
    {"№": " № ", "°": " № ", "º": " № ", "#": " № ", "/": " "}
    | dict.fromkeys(_DASHES + "\u2e3a\u2e3b", "-")
)


# Words that say a number follows, which may stand between a series and its number.
_NUMBER_WORDS = frozenset(
    "номер номера номером нөмірі нөмір nomer nomeri raqam raqami no nr num number".split()
)
# Words that say a case's or a letter's number follows: that number identifies no one;
# and words for a case, which say so when "№" or "номер" follows them.
_CASE_CUES = frozenset("ердр кусп исх вх ref".split())
_CASE_NOUNS = frozenset("дело дела делу делом деле іс ісі иш иши ish ishi case".split())
# Shortened words whose dot ends no sentence.
_ABBREVIATED = frozenset({"no", "nr", "исх", "вх", "ref"})
_INNER_DIGITS = re.compile(r"\d{6,}")


def _inner_numbers(found: _Found, token: str) -> None:
    """The numbers inside one word: each run of nine digits or more, and of six or
    more with the one to three capitals just before them (not the end of a longer word
    of capitals)."""
    for match in _INNER_DIGITS.finditer(token):
        digits = match.group()
        if len(digits) >= 9:
            _number(found, _document(digits))
        at = match.start()
        first = at
        while first > 0 and at - first < 3 and _capital(token[first - 1]):
            first -= 1
        if first < at and not (first > 0 and _capital(token[first - 1])):
            _number(found, _document(token[first:at] + digits))


def _capital(character: str) -> bool:
    return character.isalpha() and character.isupper()


# ---------------------------------------------------------------- phone numbers

# Channels whose value, written as a phone number, is one (a messenger account is
# its phone number); on other kinds (a social profile id) only a number with "+".
PHONE_CHANNELS = frozenset({"phone", "messenger"})
_PHONE_NOISE = re.compile(rf"[\s()./{_DASHES}-]+")
_DIGITS = re.compile(r"\+?[0-9]{7,15}")


def _phone(value: str) -> str | None:
    """A phone number as compared (E.164, "+" and digits), from the ways people write
    one ("+7 700 000 00 00", "+7 (700) 000-00-00", "77000000000"); None for a value
    that is not one."""
    compact = _PHONE_NOISE.sub("", unicodedata.normalize("NFKC", value))
    if not _DIGITS.fullmatch(compact):
        return None
    return compact if compact.startswith("+") else "+" + compact


def _phones(value: str) -> set[str]:
    """:func:`_phone`, and for a number written without "+" as the region dials it at
    home, what it is in E.164 too: "8 700 000 00 00" or "700 000 00 00" (+7, Kazakhstan),
    "0 555 000 000" (+996, Kyrgyzstan), "90 000 00 00" (+998, Uzbekistan, or +992,
    Tajikistan), "8 65 000000" or "65 000000" (+993, Turkmenistan)."""
    phone = _phone(value)
    if phone is None or _filler(phone):
        return set()
    found = {phone}
    if not unicodedata.normalize("NFKC", value).lstrip().startswith("+"):
        digits = phone[1:]
        for length, prefix, drop, country in _NATIONAL:
            if len(digits) == length and digits.startswith(prefix):
                found.add(country + digits[drop:])
    return found


def _filler(phone: str) -> bool:
    """A number whose digits after its country code are all one ("+7 000 000 00 00")."""
    digits = phone[1:]
    code = next((c for c, _ in _LENGTHS if digits.startswith(c)), digits[:1])
    return len(set(digits[len(code) :])) <= 1


#: National forms: (digits, first digits, trunk digits dropped, country code).
_NATIONAL = (
    (11, "8", 1, "+7"),
    (10, "7", 0, "+7"),
    (10, "0", 1, "+996"),
    (9, "", 0, "+998"),
    (9, "", 0, "+992"),
    (9, "", 0, "+996"),
    (9, "8", 1, "+993"),
    (8, "", 0, "+993"),
)

# In text: "+" and digits with spaces, brackets, dots or dashes between; and
# "8 (700) 000-00-00", as numbers of Kazakhstan are written at home.
_TEXT_PHONE = re.compile(rf"\+[0-9][0-9 ()./{_DASHES}-]{{5,24}}[0-9]")
_TEXT_TRUNK_PHONE = re.compile(
    rf"(?<![\d+])8[ ({_DASHES}-]*[0-9]{{3}}[ ){_DASHES}-]*[0-9]{{3}}"
    rf"[ {_DASHES}-]*[0-9]{{2}}[ {_DASHES}-]*[0-9]{{2}}(?!\d)"
)


# After a word that says a phone number follows ("тел.", "phone:", "WhatsApp"), a
# number as dialled at home: "тел. 0555 12-34-56", "тел: (90) 123-45-67".
_TEXT_CUED_PHONE = re.compile(
    r"(?:\b(?:тел|телефон|моб|мобильный|сот|сотовый|номер|phone|tel|mob|mobile|cell|"
    r"whatsapp|viber|telegram|nomer|raqam|телефоны|телефону)\b)"
    rf"[\s.:№#-]{{0,4}}(\(?[0-9][0-9 ().{_DASHES}-]{{6,20}}[0-9])",
    re.IGNORECASE,
)


def _cued_phones(written: str) -> set[str]:
    """The numbers a number written after a cue may be, as :func:`_phones` reads one
    without "+": the whole of it, and, as it may run on into other digits ("тел
    0555123456 2 раза"), each run of its digit groups from the start of 9 to 11
    digits."""
    groups = _DIGIT_RUN.findall(written)
    whole = "".join(groups)
    numbers = _phones(whole) if len(whole) <= 11 else set()
    digits = ""
    for group in groups:
        digits += group
        if 9 <= len(digits) <= 11:
            numbers |= _phones(digits)
    return numbers


def _text_phones(written: str) -> set[str]:
    """The numbers a "+" number in text may be: it may run on into other digits
    ("+77001234567 3 times", "+7 700 123 45 67 2025-03-10"), so every run of its
    digit groups from the start that is as long as a number of its country code is
    (:data:`_LENGTHS`), or for another country code the whole of it."""
    groups = _DIGIT_RUN.findall(written)
    whole = "".join(groups)
    lengths = [n for code, n in _LENGTHS if whole.startswith(code)]
    if not lengths:  # another country: the number as written, if it is one
        return {"+" + whole} if 8 <= len(whole) <= 15 and not _filler("+" + whole) else set()
    numbers, digits = set(), ""
    for group in groups:
        digits += group
        if len(digits) in lengths and not _filler("+" + digits):
            numbers.add("+" + digits)
    return numbers


#: Digits of a number in E.164 by its country code: the region's countries, and
#: where people of the region are taken (the Emirates, Turkey, Korea, Israel, Qatar,
#: Saudi Arabia), Belarus, Ukraine and the Caucasus.
_LENGTHS = (
    *(("7", 11), ("996", 12), ("998", 12), ("992", 12), ("993", 11)),
    *(("971", 12), ("90", 12), ("82", 12), ("972", 12), ("974", 11), ("966", 12)),
    *(("375", 12), ("380", 12), ("994", 12), ("995", 12), ("374", 11)),
)


# ---------------------------------------------------------------- contact channels


def _channel(found: _Found, channel: str | None, value: str) -> None:
    """A contact channel's value: a phone number (as a phone or messenger number, or
    written with "+" on any channel), an e-mail address, a messenger or social account
    (by its handle, however written: "@name", "t.me/name", a profile address), a
    website."""
    written = unicodedata.normalize("NFKC", value).strip()
    phones = _phones(value) if channel in PHONE_CHANNELS or written.startswith("+") else set()
    found.update(("phone", phone) for phone in phones)
    digits = "".join(_DIGIT_RUN.findall(written))
    if channel == "phone" and _phone(value) is None and len(set(digits)) > 1 and len(digits) >= 5:
        found.add(("phone", written))  # not a number as such ("+7 700 … ext. 5"): as written
    if channel == "email" or _EMAIL.fullmatch(written):
        if "@" in written:
            _email(found, written.casefold().removeprefix("mailto:"))
    elif not phones and channel in ("messenger", "social", "website"):
        _link(found, written, bare=channel != "website")


_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\"]{2,}")
# Mail hosts that ignore dots in the user name and what follows a "+".
_DOTLESS_MAIL = frozenset({"gmail.com", "googlemail.com"})


def _email(found: _Found, address: str) -> None:
    """An e-mail address (in lower case) as written, and for Gmail as delivered:
    "Aigerim.N+job@gmail.com" is "aigerimn@gmail.com"."""
    found.add(("email", address))
    user, _, host = address.rpartition("@")
    delivered = user.partition("+")[0].replace(".", "")
    if host in _DOTLESS_MAIL and delivered:
        found.add(("email", delivered + "@gmail.com"))


# Hosts whose first path segment is an account ("instagram.com/name").
_PROFILE_HOSTS = frozenset(
    """t.me telegram.me telegram.dog instagram.com instagr.am facebook.com fb.com fb.me
    m.me messenger.com vk.com vk.ru ok.ru tiktok.com twitter.com x.com youtube.com
    threads.net linkedin.com""".split()
)
# Path words before an account that say nothing of it ("t.me/s/name", "linkedin.com/in/
# name"), that name another kind of account ("facebook.com/groups/id"), or that
# begin a page that is no account ("youtube.com/watch?v=...").
_DECORATION = frozenset({"s", "in", "people", "stories", "user", "u", "c", "add", "profile"})
_NAMESPACES = frozenset({"groups", "group", "pages", "company", "channel", "joinchat", "school"})
_NOT_ACCOUNTS = frozenset(
    """watch reel reels p tv share video videos posts status hashtag explore events
    photo photos permalink.php story.php shorts playlist results login home search
    sharer.php dialog direct messages im marketplace jobs addstickers addemoji accounts
    settings notifications feed help about legal privacy policies friends bookmarks
    ads business gaming watchlist i intent highlights addlist proxy socks iv tag discover
    music live pulse""".split()
)
# Hosts everyone names: bare, without a page, they identify no one.
_COMMON_HOSTS = _PROFILE_HOSTS | frozenset(
    """gmail.com mail.ru yandex.ru yandex.kz google.com wa.me whatsapp.com
    api.whatsapp.com egov.kz gov.kz gov.kg gov.uz gov.tj gov.tm""".split()
)
_HANDLE = re.compile(r"[\w.+-]{2,}(?:/[\w.+-]+)?")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
# Query members that track a visit, not what is shown.
_TRACKING = re.compile(r"^(?:utm_.*|fbclid|gclid|si|igsh|igshid|hl|ref|ref_src|feature)$")
#: Values that say nothing is known; never an identifier.
PLACEHOLDERS = frozenset(
    """unknown none n/a na n.a null nil no нет неизвестно неизвестен неизвестна
    неизвестный неизвестная неизвестное отсутствует отсутствуют н/д нд номаълум
    noma'lum nomalum йўқ yo'q yoq жоқ белгисиз белгісіз""".split()
) | {"not known", "не указано", "не указан", "не известно", "нет данных"}
#: Names of platforms, written where an account should be: no account.
_PLATFORMS = frozenset(
    """telegram whatsapp viber instagram facebook vk vkontakte tiktok signal imo skype
    wechat ok odnoklassniki twitter youtube messenger""".split()
)


def _address(written: str) -> tuple[str, list[str], dict[str, str], str]:
    """Host (lower case, without "www.", "m.", "web.", a port), path segments (a
    trailing "/" makes none), query and fragment of an address written with or
    without scheme."""
    address = _SCHEME.sub("", written.strip().casefold())
    address, _, fragment = address.partition("#")
    address, _, query = address.partition("?")
    host, _, path = address.partition("/")
    host = host.rpartition("@")[2].partition(":")[0]  # no user or port
    for prefix in ("www.", "m.", "mobile.", "web."):
        if "." in host.removeprefix(prefix):  # not "m.me", Facebook's messenger
            host = host.removeprefix(prefix)
    segments = [urllib.parse.unquote(s) for s in path.split("/") if s]
    members = {
        name: values[0]
        for name, values in urllib.parse.parse_qs(query).items()
        if not _TRACKING.match(name)
    }
    return host, segments, members, fragment


def _link(found: _Found, written: str, *, bare: bool, host_alone: bool = True) -> None:
    """A messenger, social or website value, or an address in text: the account it
    names (with ``bare``, "@name" or "name" too), the phone number of a chat link, or
    the page; a host without a page only with ``host_alone`` (not recorded from text: a
    host named in H2 text, "olx.kz", is more often a platform than someone's)."""
    if bare and "/" not in written:
        _handle(found, written.casefold().lstrip("@"))
        return
    scheme = written[: written.find("://")].casefold() if "://" in written else ""
    host, segments, query, fragment = _address(written)
    if scheme in _APP_SCHEMES:  # tg://resolve?domain=name, viber://chat?number=…
        for member, kind in _APP_SCHEMES[scheme]:
            value = query.get(member)
            if value and kind == "phone":
                found.update(("phone", phone) for phone in _phones(value))
            elif value:
                _handle(found, value.lstrip("@"))
        return
    if host == "telegram.org" and fragment.startswith("@"):  # web.telegram.org/k/#@name
        _handle(found, fragment[1:])
        return
    if host == "wa.me" and segments:
        found.update(("phone", phone) for phone in _phones("+" + segments[0].lstrip("+")))
        return
    if host.endswith("whatsapp.com") and "phone" in query:
        found.update(("phone", phone) for phone in _phones("+" + query["phone"].lstrip("+")))
        return
    if host in _PROFILE_HOSTS:
        account = _account(host, segments, query)
        if account is not None:
            _handle(found, account)
            return
    if not segments and (not host_alone or host in _COMMON_HOSTS) or "." not in host:
        return
    if host in _PROFILE_HOSTS and not any(
        ch.isdigit() for part in [*segments[1:], *query.values()] for ch in part
    ):
        return  # a platform's own page ("instagram.com/direct/inbox"): nobody's
    page = "/".join([host, *segments])
    if host in _PROFILE_HOSTS and query:  # "watch?v=...": the query is the page
        page += "?" + urllib.parse.urlencode(sorted(query.items()), errors="surrogatepass")
    found.add(("url", page))


def _handle(found: _Found, handle: str) -> None:
    if _HANDLE.fullmatch(handle) and not _placeholder(handle) and handle not in _PLATFORMS:
        found.add(("handle", handle))


# Links that open an app at an account: the query member naming it, and what it is.
_APP_SCHEMES = {
    "tg": (("domain", "handle"), ("phone", "phone")),
    "viber": (("number", "phone"),),
    "whatsapp": (("phone", "phone"),),
}


def _account(host: str, segments: list[str], query: dict[str, str]) -> str | None:
    """The account a profile address names, or None for a page that is no account."""
    if segments[:1] == ["profile.php"]:
        return query.get("id") or None
    if host in ("facebook.com", "fb.com") and segments[:1] == ["people"] and len(segments) > 2:
        return segments[2]  # facebook.com/people/Name-Surname/<id>: profile.php?id=<id>
    if host == "messenger.com" and segments[:1] == ["t"] and len(segments) > 1:
        return segments[1]  # messenger.com/t/name: m.me/name
    while segments and segments[0] in _DECORATION:
        segments = segments[1:]
    if not segments or segments[0] in _NOT_ACCOUNTS or segments[0].endswith(".php"):
        return None
    first = segments[0]
    if first.startswith("+") and host in ("t.me", "telegram.me"):  # an invitation
        first, segments = "joinchat", ["joinchat", first[1:], *segments[1:]]
    if first in _NAMESPACES:
        return f"{first}/{segments[1]}" if len(segments) > 1 else None
    return first.lstrip("@")


# ---------------------------------------------------------------- names

_INITIAL_DIGRAPHS = frozenset({"sh", "ch", "ts", "ya", "yu", "yo"})
_MOST_NAME_WORDS = 4  # all pairs of a name of up to this many words; of more, neighbours


def _is_initial(word: str) -> bool:
    return len(word) == 1 or word in _INITIAL_DIGRAPHS


def _initials(word: str) -> set[str]:
    """The initials a whole word may be shortened to (Ш. is "sh", Я. "ya")."""
    return {word[0], word[:2]} & ({word[0]} | _INITIAL_DIGRAPHS)


def _collapsed_forms(*written: str) -> frozenset[str]:
    return frozenset(w for text in written for r in readings(text) for w in r)


# Words that make a name of the word before them ("Bakyt uulu", son of Bakyt): read
# as one word with it.
_PARTICLES = _collapsed_forms(
    "uulu kyzy kizi qizi qyzy uly ulı oglu ogly ogli o'g'li ugli",
    "уулу кызы қызы улы ұлы оглы угли ўғли қизи",
)
# A father's name (Russian -ovich, -ovna, -ichna, -ich; Kazakh -uly, -kyzy; "Alisher
# o'g'li") is shared by a person's siblings and by many strangers: in a name of three
# words or more, no pair is made of it (:func:`_patronymics`).
_PATRONYMIC = re.compile(r"(?:vich|vna|ichna|ich|uli|kizi|ogli|oglu|ugli)$")
# Words that say who is not known ("Unknown male", "Неустановленное лицо", "ФИО не
# установлено"), left out of a name; a name of nothing else is nobody's.
_NOBODY_STEMS = tuple(
    _collapsed_forms("unknown unidentif unnamed неизвестн неустановл nomalum belgisiz белгісіз")
)
_NOBODY = _collapsed_forms(
    "male female man woman person persons name surname patronymic dob",
    "лицо лица фио имя имени фамилия отчество мужчина женщина без не установлен",
    "установлена установлено установлены нет данных сведений",
)


def _nobody(word: str) -> bool:
    return word in _NOBODY or word.startswith(_NOBODY_STEMS)


def _name_words(words: tuple[str, ...]) -> list[str]:
    """A name's words as paired: particles joined to the word before them; digits,
    repeats and words that say who is not known left out."""
    joined: list[str] = []
    for word in words:
        if word in _PARTICLES and joined:
            joined[-1] += " " + word
        elif not word.isdigit() and word not in joined and not _nobody(word):
            joined.append(word)
    return joined


def _patronymics(words: list[str], *, joined: bool = True) -> set[str]:
    """The words of a name (in the order written) that are a father's name: in a name
    of three words or more, the one ending as patronymics do (or, with ``joined``,
    joined with a particle: "Alisher o'g'li"); of several, one in the middle, else the
    last (so that "Roman Arkadyevich Abramovich" keeps its surname). In text, where a
    run of capitals may begin with another word, a word with a particle is a name."""
    if len(words) < 3:
        return set()
    found = [w for w in words if joined and " " in w or _PATRONYMIC.search(w)]
    if len(found) <= 1:
        return set(found)
    middle = [w for w in found if w not in (words[0], words[-1])]
    return {middle[0] if middle else found[-1]}


def _names(found: _Found, names: list[Any], *, person: bool, outgoing: bool) -> None:
    entries: list[list[list[str]]] = []
    for name in names:
        if not isinstance(name, dict):
            continue
        lang = name.get("lang") if isinstance(name.get("lang"), str) else None
        entry: list[list[str]] = []
        for written in (name.get("latin"), name.get("original")):
            if not isinstance(written, str) or _placeholder(written):
                continue
            spelt = [_name_words(r) for r in readings(written, lang)]
            if not any(spelt):
                continue  # "Unknown male", "Неустановленное лицо": nobody
            # The name as written too: a shortened Latin form must not hide it.
            found.update(("name", key) for key in match_keys(written, lang))
            entry.extend(w for w in spelt if w)
        if entry:
            entries.append(entry)
    if not person:
        return  # an organisation's name is compared whole
    pairs: set[tuple[str, str]] = set()
    for index, entry in enumerate(entries):
        for words in entry:
            fathers = _patronymics(words)
            own = [w for w in words if w not in fathers]
            pairs.update(
                itertools.combinations(own, 2) if len(own) <= _MOST_NAME_WORDS else _near(own)
            )
            if len(own) == 1:
                # One word alone (a given name, a surname): the person's other names
                # may hold the rest of it.
                for other in entries[:index] + entries[index + 1 :]:
                    for other_words in other:
                        pairs.update((own[0], w) for w in other_words[:_MOST_NAME_WORDS])
    for first, second in pairs:
        if first != second:
            _name_pair(found, first, second, outgoing=outgoing)


def _near(words: list[str]) -> Iterable[tuple[str, str]]:
    """Words next to each other or one apart."""
    return itertools.chain(zip(words, words[1:], strict=False), zip(words, words[2:], strict=False))


def _name_pair(found: _Found, first: str, second: str, *, outgoing: bool) -> None:
    if _is_initial(first) and _is_initial(second):
        return  # two initials are no name
    if _is_initial(first) or _is_initial(second):
        initial, whole = (first, second) if _is_initial(first) else (second, first)
        kinds = _INITIAL_LOOKED_UP if outgoing else ("name-initial",)
        found.update((kind, f"{initial} {whole}") for kind in kinds)
        return
    pair = " ".join(sorted((first, second)))
    found.add(("name-pair", pair))
    if outgoing:
        found.update((("text-pair", pair), ("lower-pair", pair)))
    for kind in ("name-initial", "text-initial") if outgoing else ("name-expanded",):
        for one, other in ((first, second), (second, first)):
            found.update((kind, f"{initial} {other}") for initial in _initials(one))


_INITIAL_LOOKED_UP = ("name-expanded", "name-initial", "text-expanded", "text-initial")


# ---------------------------------------------------------------- text

_TEXT_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_TEXT_HANDLE = re.compile(r"(?<![\w@.])@([\w.]{2,64}\w)")
_TLDS = "kz|kg|uz|tj|tm|ru|by|ua|az|ge|am|tr|ae|cn|com|org|net|info|biz|me|io|su|online|site"
_TEXT_ADDRESS = re.compile(
    rf"(?:https?://|www\.|tg://|viber://|whatsapp://)\S+|(?<![@\w.-])(?:[\w-]+\.)+(?:{_TLDS})\b(?:/\S*)?",
    re.IGNORECASE,
)
_OPENING = "([{\"'«“‘‹"
_CLOSING = ".,;:!?)]}\"'»”’›"
_POSSESSIVE = re.compile(r"['’ʼ]s$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?;…]['\"»”’)]*$")
_CLOSING_BUT_DOT = _CLOSING.replace(".", "")
_LETTERS = re.compile(r"[^\W\d_]+")
_DOTTED = re.compile(r"(?<=\.)(?=[^\W\d_])")  # "Р.А." and "R.Karimov" are two tokens


def _text(found: _Found, text: str, *, outgoing: bool) -> None:
    """Names (capitalised words next to each other or one apart), numbers, phone
    numbers, e-mail addresses, "@handles" and addresses in any text of a message."""
    _text_numbers(found, text, outgoing=outgoing)  # before folding: "№" would be "No"
    text = unicodedata.normalize("NFKC", text)
    for match in _TEXT_PHONE.findall(text):
        found.update(("phone", phone) for phone in _text_phones(match))
    for match in _TEXT_TRUNK_PHONE.findall(text):
        found.update(("phone", phone) for phone in _phones(match))
    for match in _TEXT_CUED_PHONE.findall(text):
        found.update(("phone", phone) for phone in _cued_phones(match))
    for match in _TEXT_EMAIL.findall(text) if "@" in text else ():
        _email(found, match.casefold())
    for match in _TEXT_HANDLE.findall(text):
        _handle(found, match.casefold())
    for match in _TEXT_ADDRESS.findall(text):
        _link(found, match.rstrip(_CLOSING), bare=False, host_alone=outgoing)
    for run in _runs(text):
        _run_pairs(found, run, outgoing=outgoing)
    _lower_case_pairs(found, text, "name-pair" if outgoing else "lower-pair")


_CLAUSE_END = re.compile(r"[.,;:!?…()\[\]{}«»\"“”/&|]|\s-\s|\n")


def _lower_case_pairs(found: _Found, text: str, kind: str) -> None:
    """Two words next to each other of which one at least is written in lower case and
    the other in lower case or with a capital, as two words of a name ("передали
    айгерим нурланову", "Айгерим нурланова"), keys of ``kind``: a name written without
    its capitals must still meet (compared with names only, as the capitalised runs
    are, which read two capitalised words). Parts of a word joined by a dash are words;
    a word ending as a father's name does is also passed over ("айгерим нурлановна
    нурланова"), and a particle joins the word before it ("азамат бакыт уулу");
    punctuation, a word in capitals or with digits, a word of two letters or fewer, a
    joining word ("и", "with") and a few words that are names but in lower case far more
    often something else ("said", "kim": "who") end a pair."""
    for clause in _CLAUSE_END.split(visible(text)):
        words: list[tuple[frozenset[str], bool] | None] = []  # forms, in lower case
        fathers: set[int] = set()  # positions of words that may be a father's name
        for raw in clause.split():
            for token in _DASH.split(_POSSESSIVE.sub("", raw.strip(_OPENING + _CLOSING))):
                letters = _APOSTROPHE_MARKS.sub("", token)
                lower = letters.isalpha() and letters.islower()
                capital = letters.isalpha() and letters[:1].isupper() and letters[1:].islower()
                alternatives = _token_readings(token) if lower or capital else ()
                forms = frozenset(w for read in alternatives if len(read) == 1 for w in read)
                last = words[-1] if words else None
                if (
                    not forms
                    or all(len(f) <= 2 for f in forms)
                    or forms & _JOINING
                    or letters in _NOT_NAMES_IN_LOWER_CASE
                ):
                    words.append(None)
                elif forms <= _PARTICLES and last is not None:
                    words[-1] = (_with_particle(last[0], forms), last[1])
                else:
                    if any(_PATRONYMIC.search(f) for f in forms):
                        fathers.add(len(words))
                    words.append((frozenset(c for f in forms for c in _case_forms(f)), lower))
        pairs = list(itertools.pairwise(words))
        pairs += [(words[at - 1], words[at + 1]) for at in fathers if 0 < at < len(words) - 1]
        for first, second in pairs:
            # (Two capitalised words are the runs' to pair, which know initials and lists.)
            if first is not None and second is not None and (first[1] or second[1]):
                found.update(
                    (kind, " ".join(sorted((a, b))))
                    for a, b in itertools.product(first[0], second[0])
                    if a != b
                )


_DASH = re.compile(f"[-{_DASHES}]")
# Words that are names but, in lower case, far more often another word: English
# "said", "ten", Uzbek, Kazakh and Kyrgyz "kim" ("who").
_NOT_NAMES_IN_LOWER_CASE = frozenset("said ten kim ким кім".split())


class _Word(NamedTuple):
    forms: frozenset[str]  # the word in each of its readings
    initial: bool


class _Joined(NamedTuple):
    word: _Word  # the word before, with a particle joined: in its place


_END, _BREAK, _COMMA = "end", "break", "comma"  # between the words of a line
_Item = _Word | _Joined | str
# Words that join or relate two names, in any case: a run of capitals ("ТИМУР КАРИМОВ И
# РУСТАМ АЛИЕВ") ends at them.
_JOINING = _collapsed_forms(
    "and or with from for the into by to of",
    "или для при под над из от до без",
    "және жана менен hamda yoki bilan va",
)
_SEPARATORS = frozenset("/&+|")
_APOSTROPHE_MARKS = re.compile("['‘’ʻʼ`]")


def _runs(text: str) -> Iterator[list[_Word]]:
    """The runs of capitalised words of ``text`` that may be a name, each word with
    its readings (read word by word: the readings of the whole of a long text cost
    ~0.1 s). A run ends at a word in lower case, at a word with digits, at "and", "и"
    and the like in any case, at a word of one or two letters that is not written as an
    initial, at "/" or "&", at the end of a line or a sentence, and at a comma, except
    after a first word of a sentence ("Nurlanova, Aigerim"); after a surname, two
    initials or more end it too ("Karimov R.A. The victim ..."). A particle ("uulu")
    joins the word before it."""
    for line in text.splitlines():
        run: list[_Word] = []
        at_start = True  # the run began a line or a sentence
        for item in _line_items(line):
            if isinstance(item, _Word):
                run.append(item)
                continue
            if isinstance(item, _Joined):
                if run:
                    run[-1] = item.word
                continue
            if item == _COMMA and len(run) == 1 and at_start:
                continue  # "Nurlanova, Aigerim"
            yield from _split_after_initials(run)
            run, at_start = [], item == _END
        yield from _split_after_initials(run)


def _line_items(line: str) -> Iterator[_Item]:
    """The words of one line, and what stands between them."""
    last: _Word | None = None
    for raw in line.split():
        if raw in _SEPARATORS:
            last = None
            yield _BREAK
            continue
        for token in _DOTTED.split(raw.lstrip(_OPENING)):
            core = token.rstrip(_CLOSING_BUT_DOT)
            stripped = _POSSESSIVE.sub("", core.rstrip(".")).lstrip(_OPENING)
            if last is None and stripped[:1].islower():
                yield _BREAK  # lower case, and no word before it joins: no name goes on
                continue
            alternatives = _token_readings(stripped)
            if not alternatives:
                continue  # a dash or another mark: the run goes on
            letters = _APOSTROPHE_MARKS.sub("", stripped)
            initial = (
                core.endswith(".")
                and letters[:1].isupper()
                and len(letters) <= 2
                and bool(_LETTERS.fullmatch(letters))
            )
            forms = frozenset(w for words in alternatives for w in words[:1])
            if last is not None and not initial and forms <= _PARTICLES:
                last = _Word(_with_particle(last.forms, forms), False)
                yield _Joined(last)
            elif (
                not (stripped[:1].isupper() or not stripped[:1].islower())
                or any(ch.isdigit() for ch in stripped)
                or forms & _JOINING
                or not initial
                and all(len(f) <= 2 for f in forms)
            ):
                last = None
                yield _BREAK  # no name goes on
                continue
            else:
                longest = max(len(w) for w in alternatives)
                for position in range(longest):
                    words = frozenset(w[position] for w in alternatives if len(w) > position)
                    if not initial:
                        words = frozenset(c for w in words for c in _case_forms(w))
                    last = _Word(words, initial)
                    yield last
            if initial and not token.endswith((",", ";", ":", "!", "?")):
                continue  # the dot is the initial's, not the sentence's
            if _SENTENCE_END.search(token) or token.endswith((";", ":")):
                last = None
                yield _END
            elif token.endswith(","):
                last = None
                yield _COMMA


def _split_after_initials(run: list[_Word]) -> Iterator[list[_Word]]:
    """``run``, cut after each group of two initials or more that follows a whole word
    ("Karimov R.A. | The victim ..."): the Russian way of naming a person."""
    start = 0
    for at, word in enumerate(run):
        if not word.initial or at + 1 < len(run) and run[at + 1].initial:
            continue
        first = at
        while first > start and run[first - 1].initial:
            first -= 1
        if at > first > start and at + 1 < len(run):
            yield run[start : at + 1]
            start = at + 1
    yield run[start:]


def _run_pairs(found: _Found, run: list[_Word], *, outgoing: bool) -> None:
    """The keys of one run of capitalised words: two whole words next to each other or
    one apart (of whole words, a father's name left out); an initial with the whole
    word next to it: the word after the initials ("R. Karimov", "Aigerim N. Nurlanova"),
    or the word before when they end the run or are two or more ("Karimov R.A.": the
    first only, the second is the father's)."""
    wholes = [w for w in run if not w.initial]
    shown = [_shown(w) for w in wholes]
    fathers = _patronymics(shown, joined=False)
    own = [w for w, written in zip(wholes, shown, strict=True) if written not in fathers]
    father_words = {id(w) for w, written in zip(wholes, shown, strict=True) if written in fathers}
    pairs = [(pair, True) for pair in zip(own, own[1:], strict=False)]
    pairs += [(pair, False) for pair in zip(own, own[2:], strict=False)]
    for (first, second), adjacent in pairs:
        for a, b in itertools.product(first.forms, second.forms):
            if a == b:
                continue
            found.add(("name-pair" if outgoing else "text-pair", " ".join(sorted((a, b)))))
            if not outgoing and adjacent:
                for one, other in ((a, b), (b, a)):
                    found.update(("text-expanded", f"{i} {other}") for i in _initials(one))
    kinds = _TEXT_INITIAL_LOOKED_UP if outgoing else ("text-initial",)
    at = 0
    while at < len(run):
        end = at
        while end < len(run) and run[end].initial:
            end += 1
        if end == at:
            at += 1
            continue
        group = run[at:end]
        before = run[at - 1] if at > 0 else None
        after = run[end] if end < len(run) else None
        wholes_next: list[tuple[_Word, _Word]] = []
        if before is not None and (after is None or len(group) > 1):
            wholes_next.append((group[0], before))
        elif after is not None:
            wholes_next += [(initial, after) for initial in group]
        for initial, whole in wholes_next:
            if id(whole) in father_words:
                continue
            for i, other in itertools.product(initial.forms, whole.forms):
                found.update((kind, f"{i} {other}") for kind in kinds)
        at = end


def _with_particle(forms: frozenset[str], particles: frozenset[str]) -> frozenset[str]:
    """A word with the particle after it, as one word ("bakyt uulu")."""
    return frozenset(f"{f} {p}" for f in forms for p in particles)


def _shown(word: _Word) -> str:
    """One form of a word of text, to judge it by: one that ends as a father's name
    does ("Нурлановича" read as "nurlanovich"), else the first in order."""
    return next((f for f in sorted(word.forms) if _PATRONYMIC.search(f)), min(word.forms))


_TEXT_INITIAL_LOOKED_UP = ("name-expanded", "name-initial", "text-expanded")

# A name in text is often declined: in Russian ("передали Нурланову", "у Каримова
# Рустама", "с Каримовым") and with a Kazakh or Uzbek case ending ("Karimovning",
# "Каримовтың", "Aigerimga"). Each word of a run is read as written and as the
# nominative it may be a case of (on its collapsed reading, schemas/names.py).
_SURNAME_CASE = re.compile(r"^(.{2,}(?:ov|ev|in|yn))(a|u|ym|im|om|e|oyu|oy|oi|ey)$")
_NAME_CASE = re.compile(r"^(.{3,}[bcdfghjklmnprstvz])(a|u|om|em|e|i|oyu|oy|oi)$")
_TURKIC_CASE = re.compile(r"^(.{4,}?)(ning|nin|nyn|dyn|tyn|din|tin|dan|tan|den|ten|nan|nen|"
                          r"menen|benen|penen|men|ben|pen|ga|ka|ge|ke|go|ko|da|ta|de|te|"
                          r"ni|di|ti)$")  # fmt: skip
# What each Russian ending may stand for: the stem alone (a man's name, or a woman's
# that ends in a consonant) or the stem and "a" (a woman's).
_RUSSIAN_NOMINATIVES = {
    "a": ("",),
    "u": ("", "a"),
    "ym": ("",),
    "im": ("",),
    "om": ("",),
    "em": ("",),
    "e": ("", "a"),
    "i": ("a",),
    "oy": ("a",),
    "oyu": ("a",),
    "oi": ("a",),
    "ey": ("a",),
}


@functools.lru_cache(maxsize=16_384)
def _case_forms(word: str) -> frozenset[str]:
    """``word`` (a collapsed reading), and the nominatives it may be a case of:
    "karimova" also "karimov", "nurlanovu" also "nurlanov" and "nurlanova", "rustamom"
    "rustam", "gulnari" (Гульнары) "gulnara", "karimovning" "karimov"."""
    forms = {word}
    for rule in (_SURNAME_CASE, _NAME_CASE):
        match = rule.match(word)
        if match is not None:
            stem, ending = match.groups()
            forms.update(stem + tail for tail in _RUSSIAN_NOMINATIVES[ending])
    match = _TURKIC_CASE.match(word)
    if match is not None:
        forms.add(match.group(1))
    return frozenset(forms)


@functools.lru_cache(maxsize=16_384)
def _token_readings(token: str) -> tuple[tuple[str, ...], ...]:
    return tuple(sorted(readings(token)))
