"""Reference data of the sample domain: countries, currencies, categories.

Plain Python tuples, so both the generator and the silver transforms use the same facts.
"""

from __future__ import annotations

# ISO 3166 alpha-2, alpha-3, English name, local name, currency, UTC offset (hours, winter),
# first octet of the IP block the generator draws from, traffic weight.
COUNTRIES: tuple[tuple[str, str, str, str, str, int, int, float], ...] = (
    ("DE", "DEU", "Germany", "Deutschland", "EUR", 1, 85, 0.28),
    ("FR", "FRA", "France", "France", "EUR", 1, 90, 0.14),
    ("GB", "GBR", "United Kingdom", "Great Britain", "GBP", 0, 81, 0.12),
    ("NL", "NLD", "Netherlands", "Nederland", "EUR", 1, 77, 0.07),
    ("ES", "ESP", "Spain", "España", "EUR", 1, 83, 0.08),
    ("IT", "ITA", "Italy", "Italia", "EUR", 1, 93, 0.07),
    ("PL", "POL", "Poland", "Polska", "PLN", 1, 89, 0.05),
    ("SE", "SWE", "Sweden", "Sverige", "SEK", 1, 78, 0.04),
    ("CH", "CHE", "Switzerland", "Schweiz", "CHF", 1, 84, 0.04),
    ("US", "USA", "United States", "United States of America", "USD", -5, 66, 0.08),
    ("JP", "JPN", "Japan", "Nippon", "JPY", 9, 126, 0.03),
)

# Currency, EUR rate around which the generator's daily rates move (1 EUR = rate units).
CURRENCIES: tuple[tuple[str, float], ...] = (
    ("EUR", 1.0),
    ("USD", 1.08),
    ("GBP", 0.86),
    ("CHF", 0.95),
    ("SEK", 11.3),
    ("PLN", 4.35),
    ("JPY", 161.0),
    ("DKK", 7.46),
)

CATEGORIES: tuple[tuple[str, str], ...] = (
    ("5732", "electronics"),
    ("5651", "fashion"),
    ("4722", "travel"),
    ("5816", "gaming"),
    ("5411", "groceries"),
    ("5815", "digital_goods"),
    ("5712", "home"),
    ("5977", "beauty"),
    ("5941", "sports"),
    ("5942", "books"),
    ("7922", "tickets"),
    ("6051", "crypto"),
)

CHANNELS = ("web", "ios", "android")
RISK_TIERS = ("low", "medium", "high")
STATUSES = ("approved", "declined", "pending")


def country_aliases() -> dict[str, str]:
    """Every spelling the sources use for a country (upper-cased) -> ISO 3166 alpha-2."""
    out: dict[str, str] = {}
    for a2, a3, name, local, *_ in COUNTRIES:
        for alias in (a2, a3, name, local):
            out[alias.upper()] = a2
    out["UK"] = "GB"
    return out
