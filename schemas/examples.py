"""Realistic, valid example message bodies for tests, documentation and the demo.

Every person, handle and case here is invented. Domains are the reserved
``example.*`` ones (RFC 2606) and phone numbers use unallocated ranges.
Each function returns a fresh deep copy, so callers may mutate the result;
keyword overrides replace top-level members.
"""

import base64
import copy
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from .names import match_keys

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


# --- the entities of the standard in one alert (Kyrgyz and Kazakh Cyrillic) ------

_KG_RECRUITMENT_NETWORK: dict[str, Any] = {
    "kind": "trafficked-person",
    "title": "Women from Naryn moved by minibus to Almaty and held in a sewing workshop",
    "summary": (
        "Three young women from Naryn region answered an advert of a Bishkek travel agency "
        "offering work in a sewing workshop in Almaty. A driver took them across the border "
        "at Ak-Zhol, the workshop owner kept their passports and paid their wages into a "
        "wallet he controls. One woman escaped on 2025-02-20 and was identified by the "
        "Bishkek police."
    ),
    "urgency": "urgent",
    "purpose": "investigate-trafficking",
    "legal_basis": {"instrument": "CIS-2005-trafficking-cooperation", "article": "Art. 6"},
    "handling": {"code": "H2"},
    "tlp": "AMBER",
    "retention_days": 1095,
    "reported_at": 1_740_643_200,
    "nature": "fact",
    "reliability": "B",
    "accuracy": 2,
    "subjects": [
        {
            "id": "p1",
            "category": "victim",
            "names": [
                {
                    "original": "Айпери Токтогулова",
                    "script": "Cyrl",
                    "latin": "Aiperi Toktogulova",
                    "lang": "ky",
                }
            ],
            "sex": "female",
            "date_of_birth": "2003-05-14",
            "place_of_birth": {"original": "Нарын", "script": "Cyrl", "latin": "Naryn"},
            "country_of_birth": "KG",
            "nationality": "KG",
            "documents": [
                {
                    "id": "d1",
                    "type": "PP",
                    "number": "AC1234567",
                    "issuing_country": "KG",
                    "issued_on": "2021-09-01",
                    "expires_on": "2031-09",
                    "status": "withheld",
                }
            ],
            "statement": {
                "text": "Escaped on 2025-02-20; her account was taken down by the Bishkek police.",
                "nature": "fact",
                "reliability": "A",
                "accuracy": 2,
            },
        },
        {
            "id": "p2",
            "category": "suspect",
            "names": [
                {
                    "original": "Бакыт Жумабеков",
                    "script": "Cyrl",
                    "latin": "Bakyt Zhumabekov",
                    "lang": "ky",
                },
                {"original": "Bakyt Jumabekov", "script": "Latn", "latin": "Bakyt Jumabekov"},
            ],
            "sex": "male",
            "date_of_birth": "1984",
            "nationality": "KG",
            "other_nationalities": ["RU"],
            "identities": [
                {
                    "kind": "assumed",
                    "names": [
                        {
                            "original": "Бахытжан Жумабаев",
                            "script": "Cyrl",
                            "latin": "Bakhytzhan Zhumabayev",
                            "lang": "kk",
                        }
                    ],
                    "date_of_birth": "1985-01-10",
                    "nationality": "KZ",
                    "documents": [
                        {
                            "id": "d2",
                            "type": "I",
                            "number": "045678912",
                            "issuing_country": "KZ",
                            "status": "forged",
                        }
                    ],
                }
            ],
            "statement": {
                "text": "Owner of the workshop; named by all three women.",
                "nature": "fact",
                "reliability": "B",
                "accuracy": 2,
            },
        },
    ],
    "organisations": [
        {
            "id": "o1",
            "type": "travel-agency",
            "names": [
                {
                    "original": "ОсОО «Ак-Жол Тревел»",
                    "script": "Cyrl",
                    "latin": "Ak-Zhol Travel",
                    "lang": "ky",
                }
            ],
            "country": "KG",
            "registration_number": "123456-3301-OOO",
            "statement": {
                "text": "Placed the advert; suspected front for the recruiter.",
                "nature": "assessment",
                "reliability": "B",
                "accuracy": 3,
            },
        }
    ],
    "vehicles": [
        {
            "id": "v1",
            "type": "minibus",
            "registration": "01 123 ABK",
            "country": "KG",
            "make": "Mercedes-Benz",
            "model": "Sprinter",
            "colour": "white",
        }
    ],
    "accounts": [
        {
            "id": "a1",
            "type": "mobile-money",
            "number": "+996700000000",
            "institution": "Elsom",
            "country": "KG",
            "currency": "KGS",
        },
        {
            "id": "a2",
            "type": "bank",
            "iban": "KZ84722C000012345678",
            "institution": "Kaspi Bank",
            "country": "KZ",
            "currency": "KZT",
        },
    ],
    "locations": [
        {
            "id": "l1",
            "country": "KG",
            "place": {"original": "Бишкек", "script": "Cyrl", "latin": "Bishkek", "lang": "ky"},
            "role": "recruitment",
            "date": "2024-11",
        },
        {
            "id": "l2",
            "country": "KZ",
            "place": {"original": "Алматы", "script": "Cyrl", "latin": "Almaty", "lang": "kk"},
            "description": "Sewing workshop in a private house, Alatau district.",
            "role": "exploitation",
        },
    ],
    "channels": [
        {"id": "c1", "type": "social", "platform": "instagram", "value": "@akzhol_travel_example"}
    ],
    "events": [
        {
            "id": "e1",
            "type": "recruitment",
            "description": "Answered the Instagram advert and met the agency in Bishkek.",
            "date": "2024-11",
            "locations": ["l1"],
            "involved": ["p1", "o1", "c1"],
            "nature": "fact",
            "reliability": "B",
            "accuracy": 2,
        },
        {
            "id": "e2",
            "type": "exploitation",
            "description": "Sewing 14 hours a day; wages paid into the suspect's wallet.",
            "date": "2024-12-02",
            "end_date": "2025-02-20",
            "locations": ["l2"],
            "involved": ["p1", "p2", "a1", "d1"],
            "nature": "fact",
            "reliability": "B",
            "accuracy": 2,
        },
    ],
    "links": [
        {
            "source": "p2",
            "type": "controls",
            "target": "a1",
            "nature": "fact",
            "reliability": "B",
            "accuracy": 3,
        },
        {
            "source": "p2",
            "type": "holds",
            "target": "a2",
            "nature": "assessment",
            "reliability": "C",
            "accuracy": 3,
        },
        {
            "source": "p2",
            "type": "uses",
            "target": "v1",
            "nature": "fact",
            "reliability": "B",
            "accuracy": 2,
        },
        {
            "source": "p2",
            "type": "works-for",
            "target": "o1",
            "nature": "assessment",
            "reliability": "B",
            "accuracy": 3,
        },
    ],
}


def example_alert_kyrgyz_network(**overrides: Any) -> dict[str, Any]:
    """A trafficked-person alert from Kyrgyzstan using every entity of the standard:
    persons with documents and an assumed Kazakh identity, an organisation, a
    vehicle, a mobile wallet and an IBAN, events and links (Kyrgyz Cyrillic names)."""
    return _with_overrides(_KG_RECRUITMENT_NETWORK, overrides)


EXAMPLE_ALERTS["kg-trafficked-person-network"] = example_alert_kyrgyz_network

# --- referral/1 -------------------------------------------------------------------

#: 2025-03-20T08:00:00Z
_REFERRED_AT = 1_742_457_600

_KZ_UZ_RETURN_REFERRAL: dict[str, Any] = {
    "stage": "return",
    "case_reference": "SHY-2025-0317",
    "purpose": "victim-return-and-assistance",
    "legal_basis": {
        "instrument": "bilateral:KZ-UZ:trafficking-cooperation-2019",
        "text": "Agreement on cooperation in combating trafficking in persons.",
    },
    "handling": {"code": "H2"},
    "tlp": "AMBER+STRICT",
    "urgency": "urgent",
    "retention_days": 1825,
    "referred_at": _REFERRED_AT,
    "referring_agency": {
        "type": "shelter",
        "name": "Кризисный центр «Шанырак», Шымкент",
        "country": "KZ",
        "contact": {"type": "phone", "value": "+77250000000"},
    },
    "receiving_agency": {
        "type": "shelter",
        "name": "Respublika reabilitatsiya markazi, Toshkent",
        "country": "UZ",
        "unit": "Reintegration unit",
    },
    "victim": {
        "id": "p1",
        "category": "victim",
        "names": [
            {
                "original": "Dilnoza Yoʻldosheva",
                "script": "Latn",
                "latin": "Dilnoza Yo'ldosheva",
                "lang": "uz",
            },
            {
                "original": "Дилноза Йўлдошева",
                "script": "Cyrl",
                "latin": "Dilnoza Yuldosheva",
                "lang": "uz",
            },
        ],
        "sex": "female",
        "date_of_birth": "1998-02-11",
        "nationality": "UZ",
        "documents": [
            {
                "type": "P",
                "number": "FA1234567",
                "issuing_country": "UZ",
                "expires_on": "2029",
                "status": "lost",
            }
        ],
        "statement": {
            "text": "Identified as a victim of labour exploitation by the Shymkent police.",
            "nature": "fact",
            "reliability": "A",
            "accuracy": 1,
        },
    },
    "consent": {
        "given_at": 1_742_371_200,
        "form": "written",
        "language": "uz",
        "scope": ["identity", "documents", "circumstances", "risk", "needs", "health"],
        "recipients": ["shelter", "social-service", "border-service", "consulate"],
        "purposes": ["victim-return-and-assistance"],
    },
    "circumstances": {
        "text": "Worked for eight months in a cotton-processing workshop without pay; "
        "her passport was taken by the owner and is now lost.",
        "nature": "fact",
        "reliability": "B",
        "accuracy": 2,
    },
    "locations": [
        {
            "id": "l1",
            "country": "KZ",
            "place": {"original": "Шымкент", "script": "Cyrl", "latin": "Shymkent", "lang": "kk"},
            "role": "exploitation",
        },
    ],
    "events": [
        {
            "type": "exploitation",
            "description": "Unpaid work in a cotton-processing workshop.",
            "date": "2024-06",
            "end_date": "2025-02",
            "locations": ["l1"],
            "involved": ["p1"],
            "nature": "fact",
            "reliability": "B",
            "accuracy": 2,
        },
    ],
    "risk_assessment": {
        "level": "medium",
        "factors": ["debt-bondage", "stigma"],
        "assessed_at": 1_742_371_200,
        "summary": "The family borrowed for her travel; the lender has called her mother.",
    },
    "needs": ["accommodation", "medical", "psychological", "travel-documents"],
    "requested_services": [
        {"area": "accommodation", "note": "Two weeks in the shelter after arrival."},
        {"area": "psychological"},
        {"area": "travel-documents", "note": "She holds only a certificate of return."},
    ],
    "capacity_request": {"respond_by": 1_742_716_800},
    "handover": {
        "planned_at": 1_743_061_200,
        "location": {
            "country": "UZ",
            "place": {
                "original": "Gisht Koʻprik",
                "script": "Latn",
                "latin": "Gisht Ko'prik",
                "lang": "uz",
            },
            "description": "Border crossing point, Uzbek side.",
            "role": "border-crossing",
        },
        "transport": "Road, shelter vehicle",
        "escort": "social-service",
        "contact": {"type": "phone", "value": "+998710000000"},
    },
}

_KZ_TM_IDENTIFICATION_REFERRAL: dict[str, Any] = {
    "stage": "identification",
    "purpose": "victim-identification",
    "legal_basis": {"instrument": "UN-2000-trafficking-protocol", "article": "Art. 8"},
    "handling": {"code": "H2"},
    "tlp": "AMBER",
    "urgency": "routine",
    "retention_days": 365,
    "referred_at": _REFERRED_AT,
    "referring_agency": {"type": "ngo", "name": "Сана Сезим", "country": "KZ"},
    "receiving_agency": {
        "type": "consulate",
        "name": "Türkmenistanyň Gazagystan Respublikasyndaky ilçihanasy",
        "country": "TM",
    },
    "victim": {
        "category": "victim",
        "names": [
            {"original": "Maýsa Orazowa", "script": "Latn", "latin": "Maýsa Orazowa", "lang": "tk"},
            {"original": "Майса Оразова", "script": "Cyrl", "latin": "Maysa Orazova", "lang": "ru"},
        ],
        "sex": "female",
        "date_of_birth": "2000",
        "nationality": "TM",
        "statement": {
            "text": "Says she was brought to Almaty for work in a café and not allowed to leave.",
            "nature": "assessment",
            "reliability": "X",
            "accuracy": 3,
        },
    },
    "consent": {
        "given_at": 1_742_400_000,
        "form": "oral-recorded",
        "language": "tk",
        "scope": ["identity", "needs"],
        "recipients": ["consulate"],
        "purposes": ["victim-identification", "victim-return-and-assistance"],
    },
    "needs": ["travel-documents", "interpretation"],
    "capacity_request": {
        "respond_by": 1_742_803_200,
        "note": "Please confirm her identity and whether a certificate of return can be issued.",
    },
}


def example_referral(**overrides: Any) -> dict[str, Any]:
    """A return referral from a Kazakh shelter to Uzbekistan (Uzbek Latin and Cyrillic
    names, full consent, risk assessment, capacity request and handover)."""
    return _with_overrides(_KZ_UZ_RETURN_REFERRAL, overrides)


def example_referral_turkmen(**overrides: Any) -> dict[str, Any]:
    """An identification referral of a Turkmen victim to her consulate with a narrow
    consent (identity and needs only; Turkmen Latin names)."""
    return _with_overrides(_KZ_TM_IDENTIFICATION_REFERRAL, overrides)


# --- case-request/1 and case-response/1 ----------------------------------------------

#: Message ids of the examples (envelope ids, UUIDv7).
REQUEST_ID = "01959f6e-4c00-7a3b-8d21-6f0e9b2c4a11"
QUERY_ID = "01959f70-1a20-7c44-9e02-3b7d5a6c8e21"
ALERT_ID = "01958c1d-9e40-7f12-b3a4-5c6d7e8f9a01"
REFERRAL_ID = "0195b2a0-3f00-7d55-8c66-1e2f3a4b5c6d"

#: 2025-03-21T06:00:00Z
_REQUESTED_AT = 1_742_536_800

_KZ_KG_CASE_REQUEST: dict[str, Any] = {
    "purpose": "investigate-trafficking",
    "legal_basis": {"instrument": "CIS-2002-chisinau-legal-assistance", "article": "Art. 6"},
    "handling": {"code": "H1"},
    "tlp": "AMBER",
    "urgency": "urgent",
    "urgent_reason": "Two other women are believed to be still held in the workshop.",
    "retention_days": 1825,
    "requesting_authority": {
        "type": "police",
        "name": "Департамент полиции города Алматы",
        "country": "KZ",
        "unit": "Отдел по борьбе с торговлей людьми",
        "contact": {"type": "email", "value": "ctp-duty@police.example.kz"},
    },
    "case_reference": "252750031000127",
    "requested_at": _REQUESTED_AT,
    "offences": [
        {
            "code": "trafficking-in-persons",
            "national_provision": "Criminal Code of Kazakhstan, art. 128 part 2",
        },
        {"code": "forced-labour"},
    ],
    "facts": {
        "text": "Three women from Naryn region were recruited by a Bishkek travel agency and "
        "held in a sewing workshop in Almaty from December 2024.",
        "nature": "fact",
        "reliability": "B",
        "accuracy": 2,
    },
    "subjects": [
        {
            "id": "p1",
            "category": "suspect",
            "names": [
                {
                    "original": "Бакыт Жумабеков",
                    "script": "Cyrl",
                    "latin": "Bakyt Zhumabekov",
                    "lang": "ky",
                }
            ],
            "date_of_birth": "1984",
            "nationality": "KG",
            "statement": {
                "text": "Owner of the workshop.",
                "nature": "fact",
                "reliability": "B",
                "accuracy": 2,
            },
        }
    ],
    "organisations": [
        {
            "id": "o1",
            "type": "travel-agency",
            "names": [
                {
                    "original": "ОсОО «Ак-Жол Тревел»",
                    "script": "Cyrl",
                    "latin": "Ak-Zhol Travel",
                    "lang": "ky",
                }
            ],
            "country": "KG",
        }
    ],
    "channels": [{"id": "c1", "type": "phone", "value": "+996700000000"}],
    "data_sought": [
        {"category": "identity", "concerning": ["p1"]},
        {
            "category": "border-crossings",
            "concerning": ["p1"],
            "period_start": "2024-09",
            "period_end": "2025-03",
        },
        {"category": "company-records", "concerning": ["o1"]},
        {"category": "subscriber-data", "concerning": ["c1"]},
    ],
    "deadline": _REQUESTED_AT + 14 * 86_400,
}

_UZ_RU_IMMEDIATE_REQUEST: dict[str, Any] = {
    "purpose": "locate-missing-person",
    "legal_basis": {"instrument": "CIS-1993-minsk-legal-assistance", "article": "Art. 4"},
    "handling": {"code": "H0"},
    "tlp": "RED",
    "urgency": "immediate",
    "urgent_reason": "A 16-year-old girl is being moved to Moscow tonight; her phone is on.",
    "retention_days": 730,
    "requesting_authority": {
        "type": "prosecutor",
        "name": "Oʻzbekiston Respublikasi Bosh prokuraturasi",
        "country": "UZ",
    },
    "case_reference": "UZ-GP-2025-00412",
    "requested_at": _REQUESTED_AT,
    "offences": [
        {
            "code": "child-trafficking",
            "national_provision": "Criminal Code of Uzbekistan, art. 135 part 2",
        }
    ],
    "facts": {
        "text": "The girl left Samarkand on 2025-03-19 with a man who promised her work.",
        "nature": "fact",
        "reliability": "A",
        "accuracy": 2,
    },
    "subjects": [
        {
            "id": "p1",
            "category": "victim",
            "names": [
                {
                    "original": "Madina Qodirova",
                    "script": "Latn",
                    "latin": "Madina Qodirova",
                    "lang": "uz",
                },
                {
                    "original": "Мадина Қодирова",
                    "script": "Cyrl",
                    "latin": "Madina Kodirova",
                    "lang": "uz",
                },
            ],
            "sex": "female",
            "date_of_birth": "2008-10-02",
            "nationality": "UZ",
            "statement": {
                "text": "Missing since 2025-03-19.",
                "nature": "fact",
                "reliability": "A",
                "accuracy": 1,
            },
        },
        {
            "id": "p2",
            "category": "suspect",
            "names": [
                {
                    "original": "Руслан Ахмедов",
                    "script": "Cyrl",
                    "latin": "Ruslan Akhmedov",
                    "lang": "ru",
                }
            ],
            "statement": {
                "text": "Travelling with the girl, per a witness.",
                "nature": "fact",
                "reliability": "C",
                "accuracy": 3,
            },
        },
    ],
    "channels": [{"id": "c1", "type": "phone", "value": "+79000000000"}],
    "data_sought": [
        {
            "category": "traffic-data",
            "concerning": ["c1"],
            "detail": "Cell locations of the number since 2025-03-19.",
        },
        {"category": "travel-bookings", "concerning": ["p1", "p2"]},
    ],
    "deadline": _REQUESTED_AT + 12 * 3600,
}


def example_case_request(**overrides: Any) -> dict[str, Any]:
    """An urgent request of the Almaty police to Kyrgyzstan (Kyrgyz and Russian names)."""
    return _with_overrides(_KZ_KG_CASE_REQUEST, overrides)


def example_case_request_immediate(**overrides: Any) -> dict[str, Any]:
    """An immediate request of the Uzbek prosecutor to Russia about a missing child."""
    return _with_overrides(_UZ_RU_IMMEDIATE_REQUEST, overrides)


_KG_KZ_PARTIAL_RESPONSE: dict[str, Any] = {
    "in_reply_to": REQUEST_ID,
    "case_reference": "252750031000127",
    "response_reference": "ГУВД-2025-2281",
    "purpose": "investigate-trafficking",
    "legal_basis": {"instrument": "CIS-2002-chisinau-legal-assistance", "article": "Art. 6"},
    "handling": {"code": "H1"},
    "tlp": "AMBER",
    "urgency": "urgent",
    "retention_days": 1825,
    "responded_at": _REQUESTED_AT + 5 * 86_400,
    "outcome": "partial",
    "findings": {
        "text": "The suspect crossed into Kazakhstan four times since September 2024.",
        "nature": "fact",
        "reliability": "A",
        "accuracy": 1,
    },
    "provided": {
        "subjects": [
            {
                "id": "p1",
                "category": "suspect",
                "names": [
                    {
                        "original": "Бакыт Жумабеков",
                        "script": "Cyrl",
                        "latin": "Bakyt Zhumabekov",
                        "lang": "ky",
                    }
                ],
                "sex": "male",
                "date_of_birth": "1984-08-17",
                "nationality": "KG",
                "documents": [
                    {
                        "id": "d1",
                        "type": "PP",
                        "number": "AC7654321",
                        "issuing_country": "KG",
                        "issued_on": "2019-03-05",
                        "expires_on": "2029-03-05",
                        "status": "genuine",
                    }
                ],
                "statement": {
                    "text": "Identity confirmed by the population register.",
                    "nature": "fact",
                    "reliability": "A",
                    "accuracy": 1,
                },
            }
        ],
        "locations": [
            {
                "id": "l1",
                "country": "KG",
                "place": {"original": "Ак-Жол", "script": "Cyrl", "latin": "Ak-Zhol", "lang": "ky"},
                "role": "border-crossing",
            }
        ],
        "events": [
            {
                "type": "border-crossing",
                "description": "Exit from Kyrgyzstan by car.",
                "date": "2024-11-28",
                "locations": ["l1"],
                "involved": ["p1", "d1"],
                "nature": "fact",
                "reliability": "A",
                "accuracy": 1,
            },
        ],
    },
    "outstanding": "Company records of the travel agency; subscriber data of the phone.",
    "expected_by": _REQUESTED_AT + 12 * 86_400,
}

_RU_UZ_REFUSAL: dict[str, Any] = {
    "in_reply_to": "01959f6e-5d10-7b2c-9a01-7e8f9a0b1c2d",
    "case_reference": "UZ-GP-2025-00412",
    "purpose": "locate-missing-person",
    "legal_basis": {"instrument": "CIS-1993-minsk-legal-assistance", "article": "Art. 19"},
    "handling": {"code": "H1"},
    "tlp": "AMBER",
    "urgency": "routine",
    "retention_days": 365,
    "responded_at": _REQUESTED_AT + 3600,
    "outcome": "refused",
    "refusal_ground": "insufficient-information",
    "reason": "Запрос не содержит оператора связи; укажите оператора или IMEI устройства.",
}


def example_case_response(**overrides: Any) -> dict[str, Any]:
    """A partial answer from Kyrgyzstan with a person, a passport and a border crossing."""
    return _with_overrides(_KG_KZ_PARTIAL_RESPONSE, overrides)


def example_case_response_refusal(**overrides: Any) -> dict[str, Any]:
    """A refusal from Russia for insufficient information (reason in Russian)."""
    return _with_overrides(_RU_UZ_REFUSAL, overrides)


# --- hit-query/1 and hit-answer/1 ------------------------------------------------------

#: A demonstration index key: never use it for real queries.
_DEMO_INDEX_KEY = hashlib.sha256(b"xb1 demonstration blind-index key").digest()
DEMO_INDEX_KEY_ID = hashlib.sha256(_DEMO_INDEX_KEY).hexdigest()[:32]


def demo_blind_index(identifier: str) -> str:
    """The blind-index token of an (already normalised) identifier under the demo key."""
    mac = hmac.new(_DEMO_INDEX_KEY, identifier.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


# Names are blinded through their match keys (``schemas.names``), one token per
# key; how documents, phones and accounts are normalised is illustrative here.
_QUERIED = [
    *(("name-dob", f"{key}|1979-04-02") for key in sorted(match_keys("Фаридун Раҳимов", "tg"))),
    *(("name", key) for key in sorted(match_keys("Ҷамшед Қодиров", "tg"))),
    ("document", "TJ|P|400123456"),
    ("phone", "+992900000000"),
    ("account", "TJ|bank|20202972100000123456"),
]
#: What Kazakhstan's records give for each kind of queried identifier.
_HIT_REFERENCES = {
    "name-dob": "KZ-GP-HIT/2025/0091",
    "document": "KZ-GP-HIT/2025/0092",
}

_TJ_KZ_HIT_QUERY: dict[str, Any] = {
    "purpose": "investigate-trafficking",
    "legal_basis": {"instrument": "CIS-2005-trafficking-cooperation", "article": "Art. 6"},
    "handling": {"code": "H0"},
    "tlp": "AMBER",
    "urgency": "routine",
    "retention_days": 30,
    "index_key": DEMO_INDEX_KEY_ID,
    "queried_at": _REQUESTED_AT,
    "tokens": [{"kind": kind, "token": demo_blind_index(value)} for kind, value in _QUERIED],
}

_KZ_TJ_HIT_ANSWER: dict[str, Any] = {
    "in_reply_to": QUERY_ID,
    "purpose": "investigate-trafficking",
    "legal_basis": {"instrument": "CIS-2005-trafficking-cooperation", "article": "Art. 6"},
    "handling": {"code": "H0"},
    "tlp": "AMBER",
    "urgency": "routine",
    "retention_days": 30,
    "answered_at": _REQUESTED_AT + 40,
    "results": [
        {"token": demo_blind_index(value), "result": "hit", "reference": _HIT_REFERENCES[kind]}
        if kind in _HIT_REFERENCES
        else {"token": demo_blind_index(value), "result": "no-hit"}
        for kind, value in _QUERIED
    ],
}


def example_hit_query(**overrides: Any) -> dict[str, Any]:
    """A Tajik query for a name with date of birth, a name (Tajik Cyrillic, blinded
    through their match keys), a passport, a phone and an account."""
    return _with_overrides(_TJ_KZ_HIT_QUERY, overrides)


def example_hit_answer(**overrides: Any) -> dict[str, Any]:
    """Kazakhstan's answer to ``example_hit_query``: hits for the name with date of birth
    and the passport, no-hits for the rest."""
    return _with_overrides(_KZ_TJ_HIT_ANSWER, overrides)


# --- correction/1 -------------------------------------------------------------------


def example_correction(**overrides: Any) -> dict[str, Any]:
    """Kazakhstan corrects its trafficked-person alert: the victim's date of birth."""
    corrected = example_alert()
    corrected["subjects"][0]["date_of_birth"] = "2001-08-03"
    body = {
        "refers_to": ALERT_ID,
        "refers_to_type": "alert/1",
        "action": "correct",
        "reason_code": "error-in-data",
        "reason": "The victim's date of birth was taken from an expired document.",
        "corrected_at": _REPORTED_AT + 86_400,
        "purpose": corrected["purpose"],
        "legal_basis": copy.deepcopy(corrected["legal_basis"]),
        "handling": copy.deepcopy(corrected["handling"]),
        "tlp": corrected["tlp"],
        "urgency": "routine",
        "retention_days": corrected["retention_days"],
        "body": corrected,
    }
    carried = overrides.get("body")
    if isinstance(carried, dict) and {"handling", "tlp"} <= carried.keys():
        # Labelled like the body it carries (at least as strictly, as the schema asks).
        body["handling"], body["tlp"] = copy.deepcopy(carried["handling"]), carried["tlp"]
    return _with_overrides(body, overrides)


def example_withdrawal(**overrides: Any) -> dict[str, Any]:
    """A Kazakh shelter withdraws a referral after the victim withdrew her consent."""
    body = {
        "refers_to": REFERRAL_ID,
        "refers_to_type": "referral/1",
        "action": "withdraw",
        "reason_code": "consent-withdrawn",
        "reason": "Жәбірленуші келісімін қайтарып алды; деректерді жойыңыз.",
        "corrected_at": _REFERRED_AT + 2 * 86_400,
        "purpose": "victim-return-and-assistance",
        "legal_basis": {"instrument": "bilateral:KZ-UZ:trafficking-cooperation-2019"},
        "handling": {"code": "H2"},
        "tlp": "AMBER+STRICT",
        "urgency": "urgent",
        "retention_days": 30,
    }
    return _with_overrides(body, overrides)


def example_grant(**overrides: Any) -> dict[str, Any]:
    """Kazakhstan lets Kyrgyzstan pass its H2 trafficked-person alert on to Uzbekistan,
    for the victim's return and assistance."""
    body = {
        "refers_to": ALERT_ID,
        "to_states": ["UZ"],
        "purposes": ["victim-return-and-assistance", "victim-protection"],
        "granted_at": _REPORTED_AT + 2 * 86_400,
        "valid_until": _REPORTED_AT + 92 * 86_400,
        "conditions": "Only to the Uzbek authority that organises the victim's return.",
        "granted_by": "Генеральная прокуратура РК, А. Сейткали",
        "purpose": "victim-return-and-assistance",
        "legal_basis": {"instrument": "CIS-2005-trafficking-cooperation", "article": "Art. 6"},
        "handling": {"code": "H0"},
        "tlp": "AMBER",
        "urgency": "urgent",
        "retention_days": 730,
    }
    return _with_overrides(body, overrides)


def example_grant_prosecution(**overrides: Any) -> dict[str, Any]:
    """Kyrgyzstan lets Kazakhstan pass its case response on to Uzbekistan and
    Tajikistan for the prosecution of the same network, for six months."""
    body = example_grant(
        refers_to="01959f6e-4c00-7a3b-8d21-6f0e9b2c4a12",
        to_states=["UZ", "TJ"],
        purposes=["prosecution", "investigate-trafficking"],
        granted_by="Башкы прокуратура КР, Н. Осмонова",
        conditions=None,
        purpose="prosecution",
        valid_until=_REPORTED_AT + 182 * 86_400,
    )
    del body["conditions"]
    return _with_overrides(body, overrides)


#: Every example of every message type: type → example name → factory.
EXAMPLES: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "alert/1": EXAMPLE_ALERTS,
    "referral/1": {
        "kz-uz-return": example_referral,
        "kz-tm-identification": example_referral_turkmen,
    },
    "case-request/1": {
        "kz-kg-urgent": example_case_request,
        "uz-ru-immediate": example_case_request_immediate,
    },
    "case-response/1": {
        "kg-kz-partial": example_case_response,
        "ru-uz-refused": example_case_response_refusal,
    },
    "hit-query/1": {"tj-kz-query": example_hit_query},
    "hit-answer/1": {"kz-tj-answer": example_hit_answer},
    "correction/1": {
        "kz-correct-alert": example_correction,
        "kz-withdraw-referral": example_withdrawal,
    },
    "grant/1": {
        "kz-kg-onward-to-uz": example_grant,
        "kg-kz-onward-for-prosecution": example_grant_prosecution,
    },
}
