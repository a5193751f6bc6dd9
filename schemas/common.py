"""Building blocks shared by every xb1 message type.

This module owns the controlled vocabularies (handling codes, TLP, urgency,
purpose, legal instruments, data-subject categories, evaluation codes, ICAO
9303 document types, agency types), the strict field types every message
uses, and the entities (names, persons with their identities, documents,
organisations, locations, vehicles, communication channels, financial
accounts, events and links between them) that alerts, referrals and case-data
requests and responses are built from.

Entities in one message may carry a local ``id`` (``"p1"``); events, links and
the data sought by a case request point at entities by that id, and
``local_reference_errors`` checks that every such reference resolves.

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
import functools
import re
import unicodedata
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

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


def shown_handling(body: Mapping[str, Any]) -> dict[str, Any]:
    """The handling that goes with ``body`` wherever it is shown or reported: its own,
    or for a correction the stricter of its own and its corrected body's (the body is
    the data; H0 < H1 < H2 < H3), both H3 texts when both are H3. The standard checks
    each on its own, and nodes of the earlier release send corrections labelled less
    strictly than their bodies."""
    own = body.get("handling")
    handling = dict(own) if isinstance(own, dict) else {}
    carried = body.get("body")
    inner = carried.get("handling") if isinstance(carried, dict) else None
    if not isinstance(inner, dict) or inner.get("code") not in HANDLING_CODES:
        return handling
    codes = tuple(HANDLING_CODES)
    code = handling.get("code")
    if code not in codes or codes.index(inner["code"]) > codes.index(code):
        return dict(inner)
    if inner["code"] == code and inner.get("text") and inner.get("text") != handling.get("text"):
        handling["text"] = "; ".join(t for t in (handling.get("text"), inner["text"]) if t)
    return handling


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

#: ICAO Doc 9303 document codes. The first letter is the type (P passport, I/A/C
#: identity or other official travel document in TD1/TD2 size, V visa); Doc 9303
#: leaves the second letter to the issuing state, and the passport variants below
#: are the ones states use for ordinary, diplomatic, official and service
#: passports. ``other`` is any document Doc 9303 does not cover (a residence or
#: work permit, a birth certificate, a migration card) and needs a description.
DOCUMENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "P": "passport",
        "PP": "passport (ordinary)",
        "PD": "diplomatic passport",
        "PO": "official passport",
        "PS": "service passport",
        "I": "identity card or other official travel document (TD1/TD2)",
        "A": "official travel document, type A (TD1/TD2)",
        "C": "official travel document, type C (TD1/TD2; e.g. crew member certificate)",
        "V": "visa (MRV-A or MRV-B)",
        "other": "a document outside ICAO 9303 (residence or work permit, birth certificate)",
    }
)
#: What is known about a document besides its data.
DOCUMENT_STATUSES: Mapping[str, str] = MappingProxyType(
    {
        "genuine": "checked and found genuine",
        "forged": "a genuine document altered",
        "counterfeit": "a false document imitating a genuine one",
        "fraudulently-obtained": "genuine, but issued on false grounds",
        "lost": "reported lost",
        "stolen": "reported stolen",
        "withheld": "held by someone other than its holder, e.g. a recruiter or employer",
    }
)
#: Kinds of further identity a person uses besides the primary one.
IDENTITY_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "alias": "another name the person uses or is known by",
        "assumed": "a false identity, often with false or fraudulently obtained documents",
        "former": "an earlier legal identity (e.g. before marriage or a change of name)",
    }
)
ORGANISATION_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "recruitment-agency": "employment or recruitment agency",
        "travel-agency": "travel or visa agency",
        "employer": "a company or person employing workers",
        "company": "any other registered company",
        "criminal-group": "an organised criminal group",
        "ngo": "non-governmental organisation",
        "public-authority": "a public authority",
        "international-organisation": "an international organisation",
        "other": "any other organisation",
    }
)
VEHICLE_TYPES = ("car", "van", "minibus", "bus", "truck", "motorcycle", "other")
#: Financial account types.
ACCOUNT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "bank": "a bank account (IBAN or national account number)",
        "card": "a payment card (number as known, possibly masked)",
        "mobile-money": "a mobile-money or e-wallet account",
        "crypto": "a crypto-asset address on a named network",
    }
)
EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "recruitment": "a person was recruited or offered work or travel",
        "transport": "a person was moved",
        "border-crossing": "a border was crossed",
        "exploitation": "a person was exploited",
        "payment": "money was paid or transferred",
        "communication": "a call, message or post",
        "document-confiscation": "documents were taken from their holder",
        "escape": "a victim escaped or was released",
        "identification": "a victim was identified by an authority or service",
        "arrest": "a person was arrested",
        "other": "anything else, said in the description",
    }
)
#: How two entities are related (read "source TYPE target").
LINK_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "uses": "the source uses the target (a channel, vehicle, account or document)",
        "holds": "the source is the holder or owner of the target",
        "works-for": "the source works for or acts for the target",
        "member-of": "the source is a member of the target (a group)",
        "recruited": "the source recruited the target",
        "exploited": "the source exploited the target",
        "controls": "the source controls the target",
        "family-of": "the source is a family member of the target",
        "associated-with": "any other relation, said in the description",
    }
)
#: Kinds of agency that send or receive messages, or receive a victim's data.
AGENCY_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "police": "police or other law-enforcement service",
        "border-service": "border guard or border police",
        "prosecutor": "prosecution service",
        "court": "court or investigating judge",
        "central-authority": "central authority for mutual legal assistance",
        "labour-inspectorate": "labour inspectorate",
        "migration-service": "migration service",
        "social-service": "public social or child-protection service",
        "shelter": "shelter or crisis centre",
        "ngo": "non-governmental organisation assisting victims",
        "health-service": "medical or psychological service",
        "consulate": "embassy or consulate",
        "international-organisation": "international organisation (e.g. IOM)",
    }
)

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
# The same codes as a regular expression, for JSON Schema patterns.
_COUNTRY = "(?:" + "|".join(sorted(COUNTRY_CODES)) + ")"
_REF = "[A-Za-z0-9][A-Za-z0-9._/-]{0,63}"
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
LOCAL_ID_PATTERN = r"[a-z][a-z0-9-]{0,31}"
MESSAGE_ID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: 9999-12-31T23:59:59Z: keeps times within what every language's date type holds.
MAX_UNIX_TIME = 253_402_300_799

# --- strict field types ------------------------------------------------------

# C0/C1 controls, lone surrogates, and bidi embeddings/overrides/isolates (which
# can make a name display as something else). Multi-line text may keep \t \n.
FORBIDDEN_SINGLE_LINE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
FORBIDDEN_MULTI_LINE = re.compile(
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
        self._forbidden = FORBIDDEN_MULTI_LINE if multiline else FORBIDDEN_SINGLE_LINE

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

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def accepts(value: str) -> bool:
        """Whether ``_deserialize`` accepts the string ``value`` (cached: dates repeat;
        callers pass strings of at most 10 characters, so the cache stays small)."""
        match = PartialDate._FORM.fullmatch(value)
        if match is None:
            return False
        year, month, day = match.groups()
        try:
            dt.date(int(year), int(month or 1), int(day or 1))
        except ValueError:
            return False
        return True

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
    # The common case, plain ASCII, in one regular expression: separators and at
    # least one letter. Anything else is checked letter by letter.
    _PLAIN_ASCII = re.compile(r"[ .'-]*[A-Za-z][A-Za-z .'-]*")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text.isascii():
            if not self._PLAIN_ASCII.fullmatch(text):
                raise self.make_error("not_latin")
            return text
        if not any(map(self._is_latin_letter, text)) or not all(map(self._is_allowed, text)):
            raise self.make_error("not_latin")
        return text

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _is_latin_letter(ch: str) -> bool:
        if ch.isascii():
            return ch.isalpha()
        return unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo") and unicodedata.name(
            ch, ""
        ).startswith("LATIN ")

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _is_allowed(ch: str) -> bool:
        if ch in LatinText._SEPARATORS or LatinText._is_latin_letter(ch):
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


class LocalId(PatternText):
    """The id of an entity within one message, such as ``p1`` or ``loc-2``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            LOCAL_ID_PATTERN,
            description=(
                "Not a local id: lower-case letter, then up to 31 lower-case letters, "
                "digits or hyphens (e.g. 'p1')."
            ),
            max_length=32,
            **kwargs,
        )


class MessageRef(PatternText):
    """The id of another message: its envelope's ``id``, a lowercase RFC 9562 UUID
    (PROTOCOL §3; version 7 recommended)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            MESSAGE_ID_PATTERN,
            description=(
                "Not a message id: a lowercase UUID such as '01956e2a-7c4b-7d31-8a5e-2b9f0c6d4e1a'."
            ),
            max_length=36,
            **kwargs,
        )


def about(description: str) -> dict[str, str]:
    """Field metadata: the description the JSON Schema export and the reference page show."""
    return {"description": description}


def partial_dates_in_order(earlier: str, later: str) -> bool:
    """Whether partial date ``earlier`` can lie on or before ``later``.

    Dates are compared at the precision both have ("2025" and "2025-03" agree):
    the forms YYYY, YYYY-MM and YYYY-MM-DD order like their prefixes.
    """
    shared = min(len(earlier), len(later))
    return earlier[:shared] <= later[:shared]


def _letters_outside_script(text: str, prefixes: tuple[str, ...]) -> list[str]:
    """The letters of ``text`` whose Unicode name does not start with one of ``prefixes``.

    Modifier letters (category Lm, e.g. the Uzbek ʻ) belong to no single script.
    """
    # Whether a character passes depends on the character and the prefixes only, so
    # the characters seen to pass are remembered per prefixes, and a text made only of
    # them is let through by one set test (every name of every message is checked).
    passing = _PASSING_CHARACTERS.setdefault(prefixes, set())
    if passing.issuperset(text):
        return []
    stray = [
        ch
        for ch in text
        if (name := _letter_name(ch)) is not None and not name.startswith(prefixes)
    ]
    if not stray and len(passing) < _MOST_PASSING_REMEMBERED:
        passing.update(text)
    return stray


#: Characters seen to pass ``_letters_outside_script``, by the prefixes they passed for;
#: each set is bounded (it only grows from texts that passed whole).
_PASSING_CHARACTERS: dict[tuple[str, ...], set[str]] = {}
_MOST_PASSING_REMEMBERED = 4096


@functools.lru_cache(maxsize=4096)
def _letter_name(ch: str) -> str | None:
    """The Unicode name of ``ch`` if it is a letter of category Lu, Ll, Lt or Lo, else
    None (per character, cached: names repeat the same few alphabets)."""
    if unicodedata.category(ch) in ("Lu", "Ll", "Lt", "Lo"):
        return unicodedata.name(ch, "")
    return None


# --- schemas -------------------------------------------------------------------


#: Cross-field rules of one schema as JSON Schema subschemas (``StrictSchema``).
JsonSchemaRules = tuple[dict[str, Any], ...]


class StrictSchema(Schema):
    """Base of every xb1 schema: unknown members are an error.

    ``json_schema_rules`` and ``rules_beyond_json_schema`` describe a schema's own
    cross-field rules (those of its ``validates_schema`` methods) for the JSON
    Schema export: the first as draft 2020-12 subschemas that all must hold, the
    second in words, for the rules JSON Schema cannot state. Each class lists
    only the rules it adds; the export collects them along the class hierarchy.
    """

    json_schema_rules: ClassVar[JsonSchemaRules] = ()
    rules_beyond_json_schema: ClassVar[tuple[str, ...]] = ()

    class Meta:
        unknown = RAISE


class HandlingSchema(StrictSchema):
    """Handling code and, for H3 (or to add detail to H0–H2), the restriction in words."""

    code = Code(tuple(HANDLING_CODES), required=True)
    text = Text(max_length=1000, multiline=True, metadata=about("The restriction in words."))

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["code"], "properties": {"code": {"const": "H3"}}},
            "then": {"required": ["text"]},
        },
    )

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

    instrument = Text(
        max_length=100,
        required=True,
        metadata=about(
            "A known instrument id, 'national:CC:REF' or 'bilateral:CC-CC:REF' (CC: ISO 3166-1)."
        ),
    )
    article = Text(max_length=100)
    text = Text(max_length=2000, multiline=True)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "properties": {
                "instrument": {
                    "anyOf": [
                        {"enum": list(LEGAL_INSTRUMENTS)},
                        {"pattern": f"^national:{_COUNTRY}:{_REF}$"},
                        {"pattern": f"^bilateral:{_COUNTRY}-{_COUNTRY}:{_REF}$"},
                    ]
                }
            }
        },
    )
    rules_beyond_json_schema = ("The two countries of a bilateral agreement differ.",)

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

    original = Text(max_length=200, required=True, metadata=about("As the source writes it."))
    script = Script(required=True, metadata=about("Script of original."))
    latin = LatinText(
        max_length=200, required=True, metadata=about("Latin transliteration, for matching.")
    )
    lang = Language(metadata=about("Language of original."))

    rules_beyond_json_schema = (
        "For the scripts Latn, Cyrl, Arab, Grek, Armn, Geor, Hebr, Hani, Hans and Hant, every "
        "letter of original belongs to that script (by its Unicode character name).",
    )

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

    nature = Code(NATURES, required=True, metadata=about("Fact or assessment."))
    reliability = Code(
        RELIABILITY_CODES,
        required=True,
        metadata=about(
            "Source: A always reliable, B mostly reliable, C not reliable, X cannot be judged."
        ),
    )
    accuracy = fields.Integer(
        strict=True,
        required=True,
        validate=validate.OneOf(ACCURACY_CODES, error="Must be one of: 1, 2, 3, 4."),
        metadata=about(
            "Information: 1 known true, 2 known personally to the source, "
            "3 corroborated, 4 cannot be judged."
        ),
    )


class StatementSchema(EvaluatedSchema):
    """A statement in words, saying whether it is fact or assessment and how reliable."""

    text = Text(max_length=2000, multiline=True, required=True)


class DocumentSchema(StrictSchema):
    """An identity or travel document (ICAO 9303 types) or another official paper."""

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(tuple(DOCUMENT_TYPES), required=True, metadata=about("ICAO 9303 document code."))
    number = Text(max_length=40, required=True, metadata=about("Document number as printed."))
    issuing_country = Country(required=True, metadata=about("Issuing state (ISO 3166-1)."))
    issued_on = PartialDate(metadata=about("Date of issue."))
    expires_on = PartialDate(metadata=about("Date of expiry."))
    status = Code(tuple(DOCUMENT_STATUSES), metadata=about("What is known about the document."))
    description = Text(max_length=1000, multiline=True)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "other"}}},
            "then": {"required": ["description"]},
        },
    )
    rules_beyond_json_schema = ("expires_on is not before issued_on.",)

    @validates_schema
    def _document_is_consistent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "other" and "description" not in data:
            raise ValidationError(
                "A document of type 'other' says in its description what it is.", "description"
            )
        issued, expires = data.get("issued_on"), data.get("expires_on")
        if issued and expires and not partial_dates_in_order(issued, expires):
            raise ValidationError("Expiry date is before the date of issue.", "expires_on")


class IdentitySchema(StrictSchema):
    """A further identity of a person: an alias, an assumed (false) or a former identity."""

    kind = Code(tuple(IDENTITY_KINDS), required=True)
    names = StrictList(
        fields.Nested(NameSchema),
        min_items=1,
        max_items=10,
        required=True,
        metadata=about("Names of this identity, the same name in several scripts."),
    )
    sex = Code(SEXES)
    date_of_birth = PartialDate()
    nationality = Country()
    documents = StrictList(fields.Nested(DocumentSchema), min_items=1, max_items=20)


class PersonSchema(StrictSchema):
    """Who a person is.

    The person's own members describe the primary identity: ``names`` (the
    first is the primary one; the others are the same name in other scripts,
    spellings or short forms), sex, birth, nationality and documents.
    ``identities`` lists the further identities the person uses or used, each
    with its own names, date of birth, nationality and documents.
    """

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    names = StrictList(fields.Nested(NameSchema), min_items=1, max_items=10, required=True)
    sex = Code(SEXES)
    date_of_birth = PartialDate()
    place_of_birth = fields.Nested(NameSchema, metadata=about("Town or village of birth."))
    country_of_birth = Country()
    nationality = Country()
    other_nationalities = StrictList(Country(), min_items=1, max_items=5)
    documents = StrictList(fields.Nested(DocumentSchema), min_items=1, max_items=20)
    identities = StrictList(fields.Nested(IdentitySchema), min_items=1, max_items=10)
    description = Text(max_length=2000, multiline=True)


class SubjectSchema(PersonSchema):
    """A person as a data subject of a message: category plus an evaluated statement."""

    category = Code(
        SUBJECT_CATEGORIES,
        required=True,
        metadata=about("Data-subject category (Directive (EU) 2016/680 art. 6)."),
    )
    statement = fields.Nested(
        StatementSchema, required=True, metadata=about("Why this person is in the message.")
    )


class LocationSchema(StrictSchema):
    """A place: country, optionally a named place, a description, a role and a date."""

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    country = Country(required=True)
    subdivision = PatternText(
        r"[A-Z]{2}-[A-Z0-9]{1,3}",
        description="Must be an ISO 3166-2 subdivision code such as KZ-ALA or UZ-SA.",
        max_length=6,
        metadata=about(
            "ISO 3166-2 code of the region (oblast, viloyat, welayat) in that country; "
            "receiving nodes route by it."
        ),
    )
    place = fields.Nested(NameSchema)
    description = Text(max_length=1000, multiline=True)
    role = Code(LOCATION_ROLES)
    date = PartialDate()

    rules_beyond_json_schema = ("subdivision begins with the location's country code.",)

    @validates_schema
    def _subdivision_in_country(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "subdivision" in data and not data["subdivision"].startswith(data["country"] + "-"):
            raise ValidationError(
                f"Subdivision {data['subdivision']} is not in country {data['country']}.",
                "subdivision",
            )


class ChannelSchema(StrictSchema):
    """A communication channel: phone number, messenger or social account, site, e-mail.

    ``value`` is the number (E.164, ``+77011234567``), handle, URL or address;
    ``platform`` is a lower-case token such as ``telegram`` or ``whatsapp``,
    required for messenger and social channels.
    """

    _E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
    _EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
    _URL = re.compile(r"https?://[^\s/?#]+[^\s]*", re.IGNORECASE)

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(CHANNEL_TYPES, required=True)
    platform = PatternText(
        r"[a-z0-9][a-z0-9.+-]{0,39}",
        description="Must be a lower-case platform token such as 'telegram'.",
        max_length=40,
    )
    value = Text(max_length=500, required=True)
    description = Text(max_length=1000, multiline=True)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["type"], "properties": {"type": {"enum": ["messenger", "social"]}}},
            "then": {"required": ["platform"]},
        },
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "phone"}}},
            "then": {"properties": {"value": {"pattern": r"^\+[1-9][0-9]{6,14}$"}}},
        },
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "email"}}},
            "then": {"properties": {"value": {"pattern": r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"}}},
        },
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "website"}}},
            "then": {
                "properties": {"value": {"pattern": r"^[hH][tT][tT][pP][sS]?://[^\s/?#]+[^\s]*$"}}
            },
        },
    )

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


class OrganisationSchema(StrictSchema):
    """A company, agency, group or authority, named in its original script and Latin."""

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(tuple(ORGANISATION_TYPES), required=True)
    names = StrictList(fields.Nested(NameSchema), min_items=1, max_items=10, required=True)
    country = Country(metadata=about("Country of registration or seat."))
    registration_number = Text(max_length=100, metadata=about("Company or tax number."))
    description = Text(max_length=2000, multiline=True)
    statement = fields.Nested(StatementSchema, metadata=about("What is known or assessed."))


class VehicleSchema(StrictSchema):
    """A vehicle: registration plate and its country, make and model, optionally the VIN."""

    _VIN = r"[A-HJ-NPR-Z0-9]{17}"

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(VEHICLE_TYPES, required=True)
    registration = Text(max_length=20, metadata=about("Registration plate as written."))
    country = Country(metadata=about("Country of registration."))
    make = Text(max_length=50)
    model = Text(max_length=50)
    colour = Text(max_length=50)
    vin = PatternText(
        _VIN,
        description="A VIN is 17 characters, digits and capitals other than I, O and Q.",
        max_length=17,
        metadata=about("Vehicle identification number (ISO 3779)."),
    )
    description = Text(max_length=1000, multiline=True)
    statement = fields.Nested(StatementSchema)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"anyOf": [{"required": ["registration"]}, {"required": ["vin"]}, {"required": ["make"]}]},
        {"if": {"required": ["registration"]}, "then": {"required": ["country"]}},
    )

    @validates_schema
    def _vehicle_is_identifiable(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not {"registration", "vin", "make"} & data.keys():
            raise ValidationError(
                "A vehicle needs a registration, a VIN or at least its make.", "registration"
            )
        if "registration" in data and "country" not in data:
            raise ValidationError("A registration needs the country that issued it.", "country")


def iban_is_valid(iban: str) -> bool:
    """ISO 13616 check digits: the rearranged IBAN, letters as 10–35, is 1 mod 97."""
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class AccountSchema(StrictSchema):
    """A financial account: bank account, payment card, mobile-money wallet or crypto address.

    A bank account has an ``iban`` or a national ``number``; the other types have
    a ``number`` (card number, possibly masked; wallet id or phone number; crypto
    address). ``institution`` is the bank, card issuer or wallet provider.
    """

    _IBAN = r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}"

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(tuple(ACCOUNT_TYPES), required=True)
    iban = PatternText(
        _IBAN,
        description="An IBAN is written without spaces: country, check digits, account (A-Z, 0-9).",
        max_length=34,
    )
    number = Text(max_length=120, metadata=about("Account, card or wallet number, or address."))
    institution = Text(max_length=200, metadata=about("Bank, card issuer or wallet provider."))
    country = Country(metadata=about("Country of the institution."))
    currency = PatternText(
        r"[A-Z]{3}", description="Not an ISO 4217 currency code such as 'KZT'.", max_length=3
    )
    network = PatternText(
        r"[a-z0-9][a-z0-9.-]{0,39}",
        description="Must be a lower-case network token such as 'tron' or 'bitcoin'.",
        max_length=40,
        metadata=about("Crypto-asset network."),
    )
    description = Text(max_length=1000, multiline=True)
    statement = fields.Nested(StatementSchema)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"properties": {"iban": {"pattern": f"^{_COUNTRY}"}}},
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "bank"}}},
            "then": {"anyOf": [{"required": ["iban"]}, {"required": ["number"]}]},
            "else": {"required": ["number"], "not": {"required": ["iban"]}},
        },
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "crypto"}}},
            "then": {"required": ["network"]},
            "else": {"not": {"required": ["network"]}},
        },
    )
    rules_beyond_json_schema = (
        "iban has valid ISO 13616 check digits, and its country is country when both are given.",
    )

    @validates_schema
    def _account_fits_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        account_type = data["type"]
        if account_type == "bank":
            if not {"iban", "number"} & data.keys():
                raise ValidationError("A bank account needs an iban or a number.", "number")
        else:
            if "iban" in data:
                raise ValidationError("Only a bank account has an IBAN.", "iban")
            if "number" not in data:
                raise ValidationError(f"A {account_type} account needs its number.", "number")
        if account_type == "crypto" and "network" not in data:
            raise ValidationError("A crypto address needs its network.", "network")
        if account_type != "crypto" and "network" in data:
            raise ValidationError("Only a crypto address has a network.", "network")
        if "iban" in data:
            iban = data["iban"]
            if iban[:2] not in COUNTRY_CODES:
                raise ValidationError("An IBAN starts with an ISO 3166 country code.", "iban")
            if not iban_is_valid(iban):
                raise ValidationError("The IBAN check digits are wrong.", "iban")
            if data.get("country", iban[:2]) != iban[:2]:
                raise ValidationError(
                    f"The IBAN belongs to {iban[:2]}, not this country.", "country"
                )


class EventSchema(EvaluatedSchema):
    """Something that happened: what, when (a partial date or a range), where and who.

    ``locations`` and ``involved`` hold local ids of entities in the same
    message: locations, and persons, organisations, documents, vehicles,
    channels or accounts. The evaluation codes say how sure the account is.
    """

    id = LocalId(metadata=about("Local id other parts of the message refer to."))
    type = Code(tuple(EVENT_TYPES), required=True)
    description = Text(max_length=2000, multiline=True, required=True)
    date = PartialDate(metadata=about("When it happened, or when it began."))
    end_date = PartialDate(metadata=about("When it ended, for a period."))
    locations = StrictList(
        LocalId(), min_items=1, max_items=20, metadata=about("Ids of location entities.")
    )
    involved = StrictList(
        LocalId(),
        min_items=1,
        max_items=50,
        metadata=about("Ids of the persons, organisations and things involved."),
    )

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"if": {"required": ["end_date"]}, "then": {"required": ["date"]}},
    )
    rules_beyond_json_schema = ("end_date is not before date.",)

    @validates_schema
    def _period_is_in_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        if "end_date" not in data:
            return
        if "date" not in data:
            raise ValidationError("A period with an end_date needs its start date.", "date")
        if not partial_dates_in_order(data["date"], data["end_date"]):
            raise ValidationError("The end_date is before the date.", "end_date")


class LinkSchema(EvaluatedSchema):
    """A relation between two entities of the message: ``source`` TYPE ``target``."""

    source = LocalId(required=True, metadata=about("Id of the entity the relation starts at."))
    type = Code(tuple(LINK_TYPES), required=True)
    target = LocalId(required=True, metadata=about("Id of the entity the relation ends at."))
    description = Text(max_length=1000, multiline=True)

    rules_beyond_json_schema = ("source and target differ.",)

    @validates_schema
    def _link_joins_two_entities(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["source"] == data["target"]:
            raise ValidationError("A link joins two different entities.", "target")


class AgencySchema(StrictSchema):
    """An agency sending or receiving a request or a referral."""

    type = Code(tuple(AGENCY_TYPES), required=True)
    name = Text(max_length=300, required=True, metadata=about("Name, in any script."))
    country = Country(required=True)
    unit = Text(max_length=300, metadata=about("Department or unit."))
    contact = fields.Nested(ChannelSchema, metadata=about("Duty phone or e-mail of the unit."))


# --- local ids and references ---------------------------------------------------

#: Members whose items are entities, and the kind of entity they hold.
ENTITY_MEMBERS: Mapping[str, str] = MappingProxyType(
    {
        "subjects": "person",
        "victim": "person",
        "organisations": "organisation",
        "documents": "document",
        "vehicles": "vehicle",
        "locations": "location",
        "channels": "channel",
        "accounts": "account",
        "events": "event",
    }
)
# Not entities in version 1 of the standard, though they carry an optional id: a
# referral's handover location and contact, an agency's contact, a victim's contact
# channels. Their ids are neither checked for uniqueness nor referred to; making them
# entities would refuse messages that nodes of the earlier release send and accept.
_ANY_ENTITY = frozenset(ENTITY_MEMBERS.values())
_ANY_BUT_EVENT = _ANY_ENTITY - {"event"}
#: (member holding the object, member holding the reference) → kinds it may point at.
REFERENCE_MEMBERS: Mapping[tuple[str, str], frozenset[str]] = MappingProxyType(
    {
        ("events", "locations"): frozenset({"location"}),
        ("events", "involved"): _ANY_BUT_EVENT,
        ("links", "source"): _ANY_ENTITY,
        ("links", "target"): _ANY_ENTITY,
        ("data_sought", "concerning"): _ANY_BUT_EVENT,
    }
)

_Path = tuple[str | int, ...]


def _error_tree(errors: list[tuple[_Path, str]]) -> dict[str | int, Any]:
    tree: dict[str | int, Any] = {}
    for path, message in errors:
        node = tree
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node.setdefault(path[-1], []).append(message)
    return tree


def json_objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in ``node``, itself included, depth first."""
    if isinstance(node, dict):
        yield node
        for child in node.values():
            yield from json_objects(child)
    elif isinstance(node, list):
        for child in node:
            yield from json_objects(child)


def _walk_objects(node: Any, path: _Path, member: str | None):
    """Yield (path, member that holds it, object) for every JSON object in ``node``."""
    if isinstance(node, dict):
        yield path, member, node
        for key, child in node.items():
            yield from _walk_objects(child, (*path, key), key)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _walk_objects(child, (*path, index), member)


#: REFERENCE_MEMBERS by the member holding the object.
_REFERENCES_BY_HOLDER: Mapping[str, tuple[tuple[str, frozenset[str]], ...]] = MappingProxyType(
    {
        holder: tuple(
            (ref, allowed) for (h, ref), allowed in REFERENCE_MEMBERS.items() if h == holder
        )
        for holder, _ in REFERENCE_MEMBERS
    }
)


def _references_hold(body: Mapping[str, Any]) -> bool:
    """Whether ``local_reference_errors`` would find nothing: the same rules, checked
    without building the path of every object (paths are only needed for errors).

    One walk over the body with a stack (the order objects are met in does not
    matter: a duplicate id is one whichever comes first, and references are checked
    once every id is known); only the objects that hold references are kept."""
    if not isinstance(body, dict):
        return True
    kinds: dict[str, str] = {}
    referring: list[tuple[tuple[tuple[str, frozenset[str]], ...], Mapping[str, Any]]] = []
    entity_kind, references_of = ENTITY_MEMBERS.get, _REFERENCES_BY_HOLDER.get
    # (member that holds them, objects or lists); the body itself is held by no member.
    stack: list[tuple[str | None, Any]] = [(None, (body,))]
    while stack:
        member, items = stack.pop()
        for item in items:
            if isinstance(item, list):
                stack.append((member, item))
                continue
            if not isinstance(item, dict):
                continue
            if member is not None:
                kind = entity_kind(member)
                if kind is not None:
                    local_id = item.get("id")
                    if isinstance(local_id, str):
                        if local_id in kinds:
                            return False
                        kinds[local_id] = kind
                references = references_of(member)
                if references:
                    referring.append((references, item))
            for key, child in item.items():
                if isinstance(child, dict):
                    stack.append((key, (child,)))
                elif isinstance(child, list):
                    stack.append((key, child))
    for references, obj in referring:
        for ref_member, allowed in references:
            if ref_member not in obj:
                continue
            refs = obj[ref_member]
            for ref in refs if isinstance(refs, list) else (refs,):
                try:
                    if kinds.get(ref) not in allowed:
                        return False
                except TypeError:  # an unhashable reference: the full walk reports it
                    return False
    return True


def local_reference_errors(body: Mapping[str, Any]) -> dict[str | int, Any]:
    """Field errors for duplicate local ids and references that do not resolve.

    Every entity id in the message (at any depth, e.g. a document inside a
    person's identity) is unique; every reference names an entity of a kind
    the referring member allows. Returns ``{}`` when all is well.
    """
    if _references_hold(body):
        return {}
    return _reference_errors_by_path(body)


def _reference_errors_by_path(body: Mapping[str, Any]) -> dict[str | int, Any]:
    """``local_reference_errors`` by a full walk that knows each object's path."""
    kinds: dict[str, tuple[str, _Path]] = {}
    errors: list[tuple[_Path, str]] = []
    objects = list(_walk_objects(body, (), None))
    for path, member, obj in objects:
        kind = ENTITY_MEMBERS.get(member or "")
        if kind is None or not isinstance(obj.get("id"), str):
            continue
        local_id = obj["id"]
        if local_id in kinds:
            first = ".".join(map(str, kinds[local_id][1]))
            errors.append(((*path, "id"), f"Local id '{local_id}' is already used at {first}."))
        else:
            kinds[local_id] = (kind, path)
    for path, member, obj in objects:
        for (holder, ref_member), allowed in REFERENCE_MEMBERS.items():
            if member != holder or ref_member not in obj:
                continue
            refs = obj[ref_member]
            listed = isinstance(refs, list)
            for index, ref in enumerate(refs if listed else [refs]):
                where = (*path, ref_member, index) if listed else (*path, ref_member)
                if ref not in kinds:
                    errors.append((where, f"No entity with id '{ref}' in this message."))
                elif kinds[ref][0] not in allowed:
                    wanted = ", ".join(sorted(allowed))
                    errors.append(
                        (where, f"'{ref}' is of kind {kinds[ref][0]}; expected one of: {wanted}.")
                    )
    return _error_tree(errors)


class EntitySetSchema(StrictSchema):
    """The entities a message may carry, each in its own list, and the links between them.

    Any entity may carry a local ``id``; ids are unique in the message and
    every reference (in events, links, data sought) names an existing entity
    of a fitting kind.
    """

    subjects = StrictList(
        fields.Nested(SubjectSchema), min_items=1, max_items=50, metadata=about("Persons.")
    )
    organisations = StrictList(fields.Nested(OrganisationSchema), min_items=1, max_items=50)
    documents = StrictList(
        fields.Nested(DocumentSchema),
        min_items=1,
        max_items=50,
        metadata=about("Documents whose holder is not among the subjects (e.g. found or seized)."),
    )
    vehicles = StrictList(fields.Nested(VehicleSchema), min_items=1, max_items=50)
    locations = StrictList(fields.Nested(LocationSchema), min_items=1, max_items=50)
    channels = StrictList(fields.Nested(ChannelSchema), min_items=1, max_items=20)
    accounts = StrictList(fields.Nested(AccountSchema), min_items=1, max_items=50)
    events = StrictList(fields.Nested(EventSchema), min_items=1, max_items=100)
    links = StrictList(fields.Nested(LinkSchema), min_items=1, max_items=200)

    rules_beyond_json_schema = (
        "The ids of entities (subjects, victim, organisations, documents, vehicles, locations, "
        "channels, accounts, events) are unique in the message; every reference in events "
        "(locations, involved), links (source, target) and data_sought (concerning) names an "
        "entity of the message of a fitting kind. The optional id of a contact, a contact "
        "channel or a handover location is neither checked nor referred to.",
    )

    @validates_schema
    def _local_references_resolve(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = local_reference_errors(data)
        if errors:
            raise ValidationError(errors)


class MessageBodySchema(StrictSchema):
    """What every message carries: purpose, legal basis, handling, TLP, urgency, retention."""

    purpose = Code(PURPOSES, required=True, metadata=about("Why the data is sent."))
    legal_basis = fields.Nested(
        LegalBasisSchema, required=True, metadata=about("What allows this exchange.")
    )
    handling = fields.Nested(
        HandlingSchema, required=True, metadata=about("What the recipient may do with it.")
    )
    tlp = Code(TLP_LABELS, required=True, metadata=about("Traffic Light Protocol 2.0 label."))
    urgency = Code(URGENCIES, required=True)
    retention_days = Int(
        1,
        MAX_RETENTION_DAYS,
        required=True,
        metadata=about("Days the recipient may keep the payload after receipt."),
    )

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["tlp"], "properties": {"tlp": {"const": "CLEAR"}}},
            "then": {"properties": {"handling": {"properties": {"code": {"enum": ["H0", "H1"]}}}}},
        },
    )

    @validates_schema
    def _tlp_agrees_with_handling(self, data: dict[str, Any], **kwargs: Any) -> None:
        # TLP:CLEAR allows unrestricted disclosure, which H2 and H3 forbid.
        if data["tlp"] == "CLEAR" and data["handling"]["code"] in ("H2", "H3"):
            raise ValidationError(
                "TLP CLEAR contradicts handling code H2/H3; use GREEN or stricter.", "tlp"
            )
