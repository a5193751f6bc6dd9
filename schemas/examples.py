"""Realistic, valid example message bodies for tests, documentation and the demo.

Every person, handle and case here is invented. Domains are the reserved
``example.*`` ones (RFC 2606) and phone numbers use unallocated ranges.
Each function returns a fresh deep copy, so callers may mutate the result;
keyword overrides replace top-level members.
"""

import copy
from typing import Any

#: 2025-03-14T09:30:00Z
_REPORTED_AT = 1_741_944_600

_KZ_TRAFFICKED_PERSON: dict[str, Any] = {
    "kind": "trafficked-person",
    "title": "Woman from Almaty recruited via Telegram for work in Dubai, held in forced labour",
    "summary": (
        "A 23-year-old woman from Almaty answered a job offer for hotel work in Dubai "
        "published on a Telegram channel. Her passport was taken on arrival and she has "
        "been made to work without pay. Her mother reported her last message on "
        "2025-03-10. The recruiter operates the channel below and a phone number shown "
        "in the adverts."
    ),
    "urgency": "urgent",
    "purpose": "victim-protection",
    "legal_basis": {
        "instrument": "CIS-2005-trafficking-cooperation",
        "article": "Art. 6",
        "text": "Exchange of information on trafficking cases between competent authorities.",
    },
    "handling": {"code": "H2"},
    "tlp": "AMBER",
    "retention_days": 730,
    "reported_at": _REPORTED_AT,
    "nature": "assessment",
    "reliability": "B",
    "accuracy": 2,
    "subjects": [
        {
            "category": "victim",
            "names": [
                {
                    "original": "Айгерим Нурланова",
                    "script": "Cyrl",
                    "latin": "Aigerim Nurlanova",
                    "lang": "kk",
                },
                {"original": "Aigerim Nurlanova", "script": "Latn", "latin": "Aigerim Nurlanova"},
            ],
            "sex": "female",
            "date_of_birth": "2001-07",
            "nationality": "KZ",
            "description": "Height about 160 cm, dark hair, scar on the left wrist.",
            "statement": {
                "text": "Identified as a likely victim of labour exploitation from her messages.",
                "nature": "assessment",
                "reliability": "B",
                "accuracy": 2,
            },
        },
        {
            "category": "suspect",
            "names": [
                {
                    "original": "Игорь Соколов",
                    "script": "Cyrl",
                    "latin": "Igor Sokolov",
                    "lang": "ru",
                },
                {"original": "Гоша", "script": "Cyrl", "latin": "Gosha", "lang": "ru"},
            ],
            "sex": "male",
            "date_of_birth": "1986",
            "nationality": "RU",
            "statement": {
                "text": "Administers the Telegram channel and arranged the flight.",
                "nature": "fact",
                "reliability": "B",
                "accuracy": 3,
            },
        },
    ],
    "locations": [
        {
            "country": "KZ",
            "place": {"original": "Алматы", "script": "Cyrl", "latin": "Almaty", "lang": "kk"},
            "role": "recruitment",
            "date": "2025-01",
        },
        {
            "country": "AE",
            "place": {"original": "دبي", "script": "Arab", "latin": "Dubai", "lang": "ar"},
            "description": "Hotel laundry in the Deira district.",
            "role": "exploitation",
        },
    ],
    "channels": [
        {
            "type": "messenger",
            "platform": "telegram",
            "value": "@rabota_dubai_example",
            "description": "Channel with about 12,000 subscribers posting hotel jobs abroad.",
        },
        {"type": "phone", "value": "+77000000000"},
        {"type": "website", "value": "https://jobs.example.org/dubai"},
    ],
}

_UZ_MISSING_PERSON: dict[str, Any] = {
    "kind": "missing-person",
    "title": "Missing 17-year-old girl from Tashkent, possibly taken to Istanbul",
    "summary": (
        "Reported missing by her father on 2025-02-02 after leaving for a promised job "
        "as a nanny in Istanbul. Last seen at Tashkent international airport."
    ),
    "urgency": "immediate",
    "purpose": "locate-missing-person",
    "legal_basis": {
        "instrument": "bilateral:TR-UZ:police-cooperation-2018",
        "text": "Police cooperation agreement between Türkiye and Uzbekistan.",
    },
    "handling": {"code": "H1"},
    "tlp": "AMBER",
    "retention_days": 365,
    "reported_at": _REPORTED_AT,
    "nature": "fact",
    "reliability": "A",
    "accuracy": 1,
    "subjects": [
        {
            "category": "victim",
            "names": [
                {
                    "original": "Gulnoza Toʻxtayeva",
                    "script": "Latn",
                    "latin": "Gulnoza To'xtayeva",
                    "lang": "uz",
                },
                {"original": "Гулноза Тўхтаева", "script": "Cyrl", "latin": "Gulnoza Tukhtaeva"},
            ],
            "sex": "female",
            "date_of_birth": "2007-11-23",
            "nationality": "UZ",
            "statement": {
                "text": "Missing since 2025-02-02 according to her father's report.",
                "nature": "fact",
                "reliability": "A",
                "accuracy": 2,
            },
        }
    ],
    "locations": [
        {
            "country": "UZ",
            "place": {"original": "Toshkent", "script": "Latn", "latin": "Toshkent", "lang": "uz"},
            "role": "last-seen",
            "date": "2025-02-02",
        },
        {
            "country": "TR",
            "place": {"original": "İstanbul", "script": "Latn", "latin": "Istanbul", "lang": "tr"},
            "role": "destination",
        },
    ],
}

_TJ_WANTED_SUSPECT: dict[str, Any] = {
    "kind": "wanted-suspect",
    "sought_for": "arrest",
    "title": "Recruiter of construction workers for forced labour, wanted for arrest",
    "summary": (
        "Charged under art. 130.1 of the Criminal Code of Tajikistan with recruiting "
        "at least 14 men from Khatlon region for construction work abroad where their "
        "documents were withheld. Believed to travel between Dushanbe and Moscow."
    ),
    "urgency": "urgent",
    "purpose": "prosecution",
    "legal_basis": {
        "instrument": "CIS-2002-chisinau-legal-assistance",
        "article": "Art. 94",
    },
    "handling": {
        "code": "H3",
        "text": "May be shared with border services of the recipient state only.",
    },
    "tlp": "RED",
    "retention_days": 3650,
    "reported_at": _REPORTED_AT,
    "nature": "fact",
    "reliability": "A",
    "accuracy": 1,
    "subjects": [
        {
            "category": "suspect",
            "names": [
                {
                    "original": "Фаридун Раҳимов",
                    "script": "Cyrl",
                    "latin": "Faridun Rahimov",
                    "lang": "tg",
                },
                {
                    "original": "Фаридун Рахимов",
                    "script": "Cyrl",
                    "latin": "Faridun Rakhimov",
                    "lang": "ru",
                },
            ],
            "sex": "male",
            "date_of_birth": "1979-04-02",
            "nationality": "TJ",
            "statement": {
                "text": "Named by six victims as the recruiter who collected their passports.",
                "nature": "fact",
                "reliability": "B",
                "accuracy": 2,
            },
        },
        {
            "category": "witness",
            "names": [
                {
                    "original": "Ҷамшед Қодиров",
                    "script": "Cyrl",
                    "latin": "Jamshed Qodirov",
                    "lang": "tg",
                }
            ],
            "statement": {
                "text": "Former driver for the suspect; willing to testify.",
                "nature": "fact",
                "reliability": "C",
                "accuracy": 3,
            },
        },
    ],
    "locations": [
        {
            "country": "TJ",
            "place": {"original": "Душанбе", "script": "Cyrl", "latin": "Dushanbe", "lang": "tg"},
            "role": "residence",
        },
        {"country": "RU", "role": "destination"},
    ],
}


def _with_overrides(template: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body.update(copy.deepcopy(overrides))
    return body


def example_alert(**overrides: Any) -> dict[str, Any]:
    """A trafficked-person alert from Kazakhstan (Kazakh Cyrillic victim, Russian
    suspect, Telegram recruitment channel, Arabic place name)."""
    return _with_overrides(_KZ_TRAFFICKED_PERSON, overrides)


def example_alert_uzbek_latin(**overrides: Any) -> dict[str, Any]:
    """A missing-person alert from Uzbekistan with Uzbek Latin names (ʻ U+02BB)."""
    return _with_overrides(_UZ_MISSING_PERSON, overrides)


def example_alert_tajik_cyrillic(**overrides: Any) -> dict[str, Any]:
    """A wanted-suspect (red, H3, TLP RED) alert from Tajikistan with Tajik Cyrillic names."""
    return _with_overrides(_TJ_WANTED_SUSPECT, overrides)


#: Every example alert, for tests that loop over them.
EXAMPLE_ALERTS = {
    "kz-trafficked-person": example_alert,
    "uz-missing-person": example_alert_uzbek_latin,
    "tj-wanted-suspect": example_alert_tajik_cyrillic,
}
