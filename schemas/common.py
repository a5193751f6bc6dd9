"""Building blocks shared by every xb1 message type.

This module owns the controlled vocabularies (handling codes, TLP, urgency,
purpose, legal instruments, data-subject categories, evaluation codes), the
strict field types every message uses, and the entity schemas (names,
persons, subjects, locations, communication channels) that alerts, referrals
and case-data requests are built from.

Rules that hold for every schema here:

- Unknown members are rejected (``unknown = RAISE``), in nested objects too.
- A body stays plain JSON of the same shape: loading converts nothing to
  enums, dates or datetimes, so ``load(body) == body`` for a valid body and
  the result can be re-serialised as xb1-json (PROTOCOL §2).
- Types are exact: a string field takes ``str`` only (not bytes), an integer
  field takes ``int`` only (not bool, not float, not ``"5"``).
- Optional members are omitted, never ``null``; lists, when present, are
  non-empty.
"""

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

# --- controlled vocabularies -------------------------------------------------

#: Handling codes after Europol SIENA: what the recipient may do with the data.
HANDLING_CODES: Mapping[str, str] = MappingProxyType(
    {
        "H0": "use only to prevent and combat crime",
        "H1": "not for judicial proceedings without the originator's permission",
        "H2": "no onward dissemination without the originator's permission",
        "H3": "other restrictions, stated in the handling text",
    }
)
#: Traffic Light Protocol 2.0 labels, written without the ``TLP:`` prefix.
TLP_LABELS = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
URGENCIES = ("routine", "urgent", "immediate")
#: Why the data is sent; bilateral agreements allow (typ, purpose) pairs.
PURPOSES = (
    "prevent-trafficking",
    "investigate-trafficking",
    "prosecution",
    "victim-identification",
    "victim-protection",
    "victim-return-and-assistance",
    "locate-missing-person",
)
#: International instruments a legal basis may cite by id. National law and
#: bilateral agreements are cited as ``national:CC:ref`` and
#: ``bilateral:CC-CC:ref`` (see ``LegalBasisSchema``).
LEGAL_INSTRUMENTS: Mapping[str, str] = MappingProxyType(
    {
        "UN-2000-organized-crime-convention": (
            "UN Convention against Transnational Organized Crime (Palermo, 2000)"
        ),
        "UN-2000-trafficking-protocol": (
            "Protocol to Prevent, Suppress and Punish Trafficking in Persons, "
            "Especially Women and Children (Palermo, 2000)"
        ),
        "CIS-2005-trafficking-cooperation": (
            "Agreement on cooperation of the CIS member states in combating trafficking "
            "in persons, human organs and tissues (Moscow, 2005)"
        ),
        "CIS-1993-minsk-legal-assistance": (
            "Convention on legal assistance and legal relations in civil, family and "
            "criminal matters (Minsk, 1993)"
        ),
        "CIS-2002-chisinau-legal-assistance": (
            "Convention on legal assistance and legal relations in civil, family and "
            "criminal matters (Chisinau, 2002)"
        ),
        "COE-2005-trafficking-convention": (
            "Council of Europe Convention on Action against Trafficking in Human Beings "
            "(Warsaw, 2005, CETS 197)"
        ),
        "INTERPOL-2011-rules-processing-data": "INTERPOL's Rules on the Processing of Data",
    }
)
#: EU Directive 2016/680 art. 6 categories of data subjects.
SUBJECT_CATEGORIES = ("victim", "suspect", "convicted", "witness", "contact")
#: Source reliability (4x4 evaluation system): A always reliable, B mostly
#: reliable, C not reliable, X cannot be judged.
RELIABILITY_CODES = ("A", "B", "C", "X")
#: Information accuracy: 1 known to be true without reservation, 2 known
#: personally to the source, 3 not known personally but corroborated, 4 cannot
#: be judged.
ACCURACY_CODES = (1, 2, 3, 4)
NATURES = ("fact", "assessment")
#: ICAO 9303 sex markers F / M / X, spelt out.
SEXES = ("female", "male", "unspecified")
LOCATION_ROLES = (
    "origin",
    "residence",
    "recruitment",
    "transit",
    "border-crossing",
    "destination",
    "exploitation",
    "last-seen",
)
CHANNEL_TYPES = ("phone", "messenger", "social", "website", "email")

#: ISO 3166-1 alpha-2: the 249 officially assigned codes (user-assigned codes
#: such as XK are not accepted).
COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI
    BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN
    CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK
    FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK
    ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP
    NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()
)
#: ISO 639-1 two-letter language codes.
LANGUAGE_CODES = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce
    ch co cr cs cu cv cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr
    fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is
    it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln
    lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv
    ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk
    sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw
    ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
    """.split()
)
#: For these ISO 15924 scripts the letters of ``Name.original`` are checked
#: against the Unicode character names, which catches mislabelled scripts and
#: Latin look-alikes typed into Cyrillic names ("Aйгерим" with a Latin A).
SCRIPT_LETTER_PREFIXES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Latn": ("LATIN ",),
        "Cyrl": ("CYRILLIC ",),
        "Arab": ("ARABIC ",),
        "Grek": ("GREEK ",),
        "Armn": ("ARMENIAN ",),
        "Geor": ("GEORGIAN ",),
        "Hebr": ("HEBREW ",),
        "Hani": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
        "Hans": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
        "Hant": ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"),
    }
)

MAX_RETENTION_DAYS = 3650
#: 9999-12-31T23:59:59Z: keeps times within what every language's date type holds.
MAX_UNIX_TIME = 253_402_300_799

# --- strict field types ------------------------------------------------------

# C0/C1 controls, lone surrogates, and bidi embeddings/overrides/isolates (which
# can make a name display as something else). Multi-line text may keep \t \n.
_FORBIDDEN_SINGLE_LINE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_FORBIDDEN_MULTI_LINE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)


class Text(fields.Field[str]):
    """A non-blank ``str`` of bounded length without control characters."""

    default_error_messages = {
        "invalid": "Not a valid string.",
        "too_short": "Shorter than minimum length {min}.",
        "too_long": "Longer than maximum length {max}.",
        "blank": "Must not be blank.",
        "forbidden_char": "Contains a control, bidi-override or surrogate character.",
    }

    def __init__(
        self, *, max_length: int, min_length: int = 1, multiline: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.min_length = min_length
        self.max_length = max_length
        self._forbidden = _FORBIDDEN_MULTI_LINE if multiline else _FORBIDDEN_SINGLE_LINE

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if len(value) > self.max_length:
            raise self.make_error("too_long", max=self.max_length)
        if len(value) < self.min_length:
            raise self.make_error("too_short", min=self.min_length)
        if value.strip() == "":
            raise self.make_error("blank")
        if self._forbidden.search(value):
            raise self.make_error("forbidden_char")
        return value


class Code(fields.Field[str]):
    """A ``str`` from a closed vocabulary, compared exactly (case matters)."""

    default_error_messages = {
        "invalid": "Not a valid string.",
        "not_in_vocabulary": "Must be one of: {choices}.",
    }

    def __init__(
        self, choices: tuple[str, ...] | frozenset[str], *, error: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.choices = frozenset(choices)
        self._listed = ", ".join(choices) if isinstance(choices, tuple) else ""
        if error is not None:
            self.error_messages = {**self.error_messages, "not_in_vocabulary": error}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if value not in self.choices:
            raise self.make_error("not_in_vocabulary", choices=self._listed)
        return value


class PatternText(fields.Field[str]):
    """A ``str`` matching a full-match regular expression (ASCII classes only)."""

    default_error_messages = {"invalid": "Not a valid string.", "mismatch": "{description}"}

    def __init__(self, pattern: str, *, description: str, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pattern = re.compile(pattern, re.ASCII)
        self.description = description
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if len(value) > self.max_length or not self.pattern.fullmatch(value):
            raise self.make_error("mismatch", description=self.description)
        return value


class Int(fields.Integer):
    """An ``int`` in [minimum, maximum]; bools, floats and numeric strings are refused."""

    def __init__(self, minimum: int, maximum: int, **kwargs: Any) -> None:
        super().__init__(strict=True, validate=validate.Range(minimum, maximum), **kwargs)


class UnixTime(Int):
    """Integer Unix seconds (UTC), from 1970 to the end of year 9999."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(0, MAX_UNIX_TIME, **kwargs)


class Country(Code):
    """An ISO 3166-1 alpha-2 country code (upper case)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(COUNTRY_CODES, error="Not an ISO 3166-1 alpha-2 country code.", **kwargs)


class Language(Code):
    """An ISO 639-1 language code (lower case)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(LANGUAGE_CODES, error="Not an ISO 639-1 language code.", **kwargs)


class Script(PatternText):
    """An ISO 15924 script code in its registered spelling (``Cyrl``); format only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            r"[A-Z][a-z]{3}",
            description="Not an ISO 15924 script code (four letters, first upper case).",
            max_length=4,
            **kwargs,
        )


class PartialDate(fields.Field[str]):
    """A calendar date that may be partial: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``."""

    default_error_messages = {
        "invalid": "Not a valid string.",
        "format": "Not a date of the form YYYY, YYYY-MM or YYYY-MM-DD.",
        "calendar": "Not a date in the calendar.",
    }
    _FORM = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?", re.ASCII)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        match = self._FORM.fullmatch(value)
        if match is None:
            raise self.make_error("format")
        year, month, day = match.groups()
        try:
            dt.date(int(year), int(month or 1), int(day or 1))
        except ValueError as e:
            raise self.make_error("calendar") from e
        return value


class LatinText(Text):
    """A name written in Latin letters, for matching across scripts.

    Letters must be Latin (ASCII or accented, e.g. Turkmen "ň", "ý"); spaces,
    hyphens, full stops and apostrophes (including Uzbek "ʻ" U+02BB and "ʼ"
    U+02BC) may separate them; digits and other symbols may not.
    """

    default_error_messages = {
        **Text.default_error_messages,
        "not_latin": "Must contain Latin letters only (with spaces, hyphens, apostrophes).",
    }
    _SEPARATORS = frozenset(" -.'\u2019\u02bb\u02bc")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not any(map(self._is_latin_letter, text)) or not all(map(self._is_allowed, text)):
            raise self.make_error("not_latin")
        return text

    @staticmethod
    def _is_latin_letter(ch: str) -> bool:
        if ch.isascii():
            return ch.isalpha()
        return unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo") and unicodedata.name(
            ch, ""
        ).startswith("LATIN ")

    @classmethod
    def _is_allowed(cls, ch: str) -> bool:
        if ch in cls._SEPARATORS or cls._is_latin_letter(ch):
            return True
        # combining accents of a decomposed letter (NFD input)
        return unicodedata.category(ch) == "Mn" and "\u0300" <= ch <= "\u036f"


class StrictList(fields.List[Any]):
    """A JSON array (Python ``list`` only) whose length is checked before its items."""

    default_error_messages = {
        "invalid": "Not a valid list.",
        "length": "Must have between {min} and {max} items.",
    }

    def __init__(self, inner: fields.Field[Any], *, min_items: int, max_items: int, **kwargs: Any):
        super().__init__(inner, **kwargs)
        self.min_items = min_items
        self.max_items = max_items

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if not isinstance(value, list):
            raise self.make_error("invalid")
        if not self.min_items <= len(value) <= self.max_items:
            raise self.make_error("length", min=self.min_items, max=self.max_items)
        return super()._deserialize(value, attr, data, **kwargs)


def _letters_outside_script(text: str, prefixes: tuple[str, ...]) -> list[str]:
    """The letters of ``text`` whose Unicode name does not start with one of ``prefixes``.

    Modifier letters (category Lm, e.g. the Uzbek ʻ) belong to no single script.
    """
    return [
        ch
        for ch in text
        if unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo")
        and not unicodedata.name(ch, "").startswith(prefixes)
    ]


# --- schemas -------------------------------------------------------------------


class StrictSchema(Schema):
    """Base of every xb1 schema: unknown members are an error."""

    class Meta:
        unknown = RAISE


class HandlingSchema(StrictSchema):
    """Handling code and, for H3 (or to add detail to H0–H2), the restriction in words."""

    code = Code(tuple(HANDLING_CODES), required=True)
    text = Text(max_length=1000, multiline=True)

    @validates_schema
    def _h3_states_its_restriction(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["code"] == "H3" and "text" not in data:
            raise ValidationError("Handling code H3 requires the restriction text.", "text")


class LegalBasisSchema(StrictSchema):
    """The instrument that allows this exchange, optionally the article and a note.

    ``instrument`` is an id from ``LEGAL_INSTRUMENTS``, or
    ``national:CC:REF`` (a law of country CC) or ``bilateral:CC-CC:REF`` (an
    agreement between two countries), REF being a short token such as
    ``criminal-procedure-code`` or ``2019-04``.
    """

    _NATIONAL = re.compile(r"national:([A-Z]{2}):[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", re.ASCII)
    _BILATERAL = re.compile(
        r"bilateral:([A-Z]{2})-([A-Z]{2}):[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", re.ASCII
    )

    instrument = Text(max_length=100, required=True)
    article = Text(max_length=100)
    text = Text(max_length=2000, multiline=True)

    @validates_schema
    def _instrument_is_known(self, data: dict[str, Any], **kwargs: Any) -> None:
        instrument = data["instrument"]
        if instrument in LEGAL_INSTRUMENTS:
            return
        if match := self._NATIONAL.fullmatch(instrument):
            countries = match.groups()
        elif match := self._BILATERAL.fullmatch(instrument):
            countries = match.groups()
            if countries[0] == countries[1]:
                raise ValidationError("A bilateral agreement needs two countries.", "instrument")
        else:
            raise ValidationError(
                "Not a known instrument id, 'national:CC:REF' or 'bilateral:CC-CC:REF'.",
                "instrument",
            )
        if not COUNTRY_CODES.issuperset(countries):
            raise ValidationError("Not an ISO 3166-1 alpha-2 country code.", "instrument")


class NameSchema(StrictSchema):
    """A name in its original script with a Latin transliteration.

    ``original`` is the name as the person or the source writes it; ``latin``
    is the transliteration used for matching (equal to ``original`` when that
    is already Latin and plain). ``script`` is ISO 15924, ``lang`` ISO 639-1.
    """

    original = Text(max_length=200, required=True)
    script = Script(required=True)
    latin = LatinText(max_length=200, required=True)
    lang = Language()

    @validates_schema
    def _original_is_in_its_script(self, data: dict[str, Any], **kwargs: Any) -> None:
        prefixes = SCRIPT_LETTER_PREFIXES.get(data["script"])
        if prefixes is None:
            return
        stray = _letters_outside_script(data["original"], prefixes)
        if stray:
            shown = ", ".join(f"U+{ord(ch):04X}" for ch in dict.fromkeys(stray))
            raise ValidationError(f"Letters not in script {data['script']}: {shown}.", "original")


class EvaluatedSchema(StrictSchema):
    """Evaluation codes every statement carries (SIENA/UMF 4x4 system)."""

    nature = Code(NATURES, required=True)
    reliability = Code(RELIABILITY_CODES, required=True)
    accuracy = fields.Integer(
        strict=True,
        required=True,
        validate=validate.OneOf(ACCURACY_CODES, error="Must be one of: 1, 2, 3, 4."),
    )


class StatementSchema(EvaluatedSchema):
    """A statement in words, saying whether it is fact or assessment and how reliable."""

    text = Text(max_length=2000, multiline=True, required=True)


class PersonSchema(StrictSchema):
    """Who a person is. The first name is the primary one, the others aliases."""

    names = StrictList(fields.Nested(NameSchema), min_items=1, max_items=10, required=True)
    sex = Code(SEXES)
    date_of_birth = PartialDate()
    nationality = Country()
    description = Text(max_length=2000, multiline=True)


class SubjectSchema(PersonSchema):
    """A person as a data subject of a message: category plus an evaluated statement."""

    category = Code(SUBJECT_CATEGORIES, required=True)
    statement = fields.Nested(StatementSchema, required=True)


class LocationSchema(StrictSchema):
    """A place: country, optionally a named place, a description, a role and a date."""

    country = Country(required=True)
    place = fields.Nested(NameSchema)
    description = Text(max_length=1000, multiline=True)
    role = Code(LOCATION_ROLES)
    date = PartialDate()


class ChannelSchema(StrictSchema):
    """A communication channel: phone number, messenger or social account, site, e-mail.

    ``value`` is the number (E.164, ``+77011234567``), handle, URL or address;
    ``platform`` is a lower-case token such as ``telegram`` or ``whatsapp``,
    required for messenger and social channels.
    """

    _E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
    _EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
    _URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)

    type = Code(CHANNEL_TYPES, required=True)
    platform = PatternText(
        r"[a-z0-9][a-z0-9.+-]{0,39}",
        description="Must be a lower-case platform token such as 'telegram'.",
        max_length=40,
    )
    value = Text(max_length=500, required=True)
    description = Text(max_length=1000, multiline=True)

    @validates_schema
    def _value_fits_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        channel_type, value = data["type"], data["value"]
        if channel_type in ("messenger", "social") and "platform" not in data:
            raise ValidationError(f"A {channel_type} channel needs its platform.", "platform")
        if channel_type == "phone" and not self._E164.fullmatch(value):
            raise ValidationError("A phone number must be E.164, e.g. +77011234567.", "value")
        if channel_type == "email" and not self._EMAIL.fullmatch(value):
            raise ValidationError("Not an e-mail address.", "value")
        if channel_type == "website" and not self._URL.fullmatch(value):
            raise ValidationError("A website must be an http(s) URL.", "value")


class MessageBodySchema(StrictSchema):
    """What every message carries: purpose, legal basis, handling, TLP, urgency, retention."""

    purpose = Code(PURPOSES, required=True)
    legal_basis = fields.Nested(LegalBasisSchema, required=True)
    handling = fields.Nested(HandlingSchema, required=True)
    tlp = Code(TLP_LABELS, required=True)
    urgency = Code(URGENCIES, required=True)
    retention_days = Int(1, MAX_RETENTION_DAYS, required=True)

    @validates_schema
    def _tlp_agrees_with_handling(self, data: dict[str, Any], **kwargs: Any) -> None:
        # TLP:CLEAR allows unrestricted disclosure, which H2 and H3 forbid.
        if data["tlp"] == "CLEAR" and data["handling"]["code"] in ("H2", "H3"):
            raise ValidationError(
                "TLP CLEAR contradicts handling code H2/H3; use GREEN or stricter.", "tlp"
            )
