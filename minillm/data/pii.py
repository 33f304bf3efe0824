"""PII removal: find personal identifiers with patterns plus checksums, replace each with a typed
placeholder, and count what was replaced.

Types, in the order they are applied (earlier types claim their characters first, so a card number
is never re-read as a phone number):

  email        local@domain.tld                                            -> <EMAIL>
  iban         ISO 13616 IBAN, country length table + mod-97 check = 1     -> <IBAN>
  ipv6         RFC 4291 text forms, validated by the ipaddress module      -> <IPV6>
  ipv4         dotted quad, each octet 0-255                               -> <IPV4>
  phone        international E.164 with '+' (8-15 digits, any grouping),
               North-American (415) 555-2671 / 415-555-2671 / 1-800-...   -> <PHONE>
  credit_card  13-19 digits, optional space/dash groups, Luhn checksum     -> <CREDIT_CARD>
  ssn          US SSN AAA-GG-SSSS (area not 000/666/9xx, group/serial not 0) -> <SSN>

The checksums (Luhn 1960 for cards, ISO 7064 mod 97-10 for IBANs) are what keep ordinary digit
strings -- dates, versions, prices, order numbers -- from being replaced. A precision-first design,
in the spirit of the regex PII pass of BigScience ROOTS and FineWeb (which masks emails and IPs):
every rule demands a specific shape, so it misses free-form numbers rather than mangling text.
"""
import ipaddress

import regex

PLACEHOLDERS = {"email": "<EMAIL>", "iban": "<IBAN>", "ipv6": "<IPV6>", "ipv4": "<IPV4>",
                "phone": "<PHONE>", "credit_card": "<CREDIT_CARD>", "ssn": "<SSN>"}

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry)
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20,
    "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18,
    "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30,
    "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24,
    "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}

_EMAIL = regex.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                       r"\.[A-Za-z]{2,}(?![\w-])")
# two letters, two check digits, then groups of 4 (optionally space-separated) and a short tail
_IBAN = regex.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")
_IPV6 = regex.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = regex.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?!\w)")
_PHONE_INTL = regex.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){1,6}(?![\w])")
_PHONE_NANP = regex.compile(r"(?<![\w+.-])(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
                            r"(?![\w-]|\.\d)")
_CARD = regex.compile(r"(?<![\w.,-])\d(?:[ -]?\d){12,18}(?![\w-]|[.,]\d)")
_SSN = regex.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")


def luhn_valid(digits):
    """Luhn (mod 10) checksum of a digit string: double every second digit from the right."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(compact):
    """ISO 13616: known country length, and (BBAN + country + check digits) as a number mod 97 == 1."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _sub_iban(m):
    # the pattern may run past the IBAN into a following upper-case group: try shorter prefixes
    s = m.group(0)
    for end in range(len(s), 3, -1):
        if end < len(s) and s[end] != " ":
            continue                                  # cut only at a group boundary
        if iban_valid(s[:end].replace(" ", "")):
            return True, end
    return False, 0


def _sub_card(m):
    digits = regex.sub(r"[ -]", "", m.group(0))
    return (13 <= len(digits) <= 19 and luhn_valid(digits)), len(m.group(0))


def _sub_ipv6(m):
    s = m.group(0)
    groups = [g for g in s.split(":") if g]
    # at least two non-empty groups and 4 hex digits: keeps slices like a[::2] and times 12:30:45
    if len(groups) < 2 or sum(map(len, groups)) < 4:
        return False, 0
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False, 0
    return True, len(s)


def _sub_phone_intl(m):
    n = sum(c.isdigit() for c in m.group(0))
    return 8 <= n <= 15, len(m.group(0))                 # E.164: at most 15 digits


def _always(m):
    return True, len(m.group(0))


RULES = [  # (type, pattern, validator(match) -> (is_pii, length of the PII prefix of the match))
    ("email", _EMAIL, _always),
    ("iban", _IBAN, _sub_iban),
    ("ipv6", _IPV6, _sub_ipv6),
    ("ipv4", _IPV4, _always),
    ("phone", _PHONE_INTL, _sub_phone_intl),
    ("phone", _PHONE_NANP, _always),
    ("credit_card", _CARD, _sub_card),
    ("ssn", _SSN, _always),
]


def remove_pii(text, types=None):
    """Replace PII in `text` with typed placeholders.

    types: iterable of type names from PLACEHOLDERS (default: all). Returns (new_text, counts)
    where counts maps every requested type to the number of replacements (zeros included)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    wanted = set(PLACEHOLDERS) if types is None else set(types)
    unknown = wanted - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"types: unknown PII types {sorted(unknown)}; known: {sorted(PLACEHOLDERS)}")
    counts = {t: 0 for t in PLACEHOLDERS if t in wanted}
    for kind, pattern, validate in RULES:
        if kind not in wanted:
            continue

        def replace(m):
            ok, length = validate(m)
            if not ok:
                return m.group(0)
            counts[kind] += 1
            return PLACEHOLDERS[kind] + m.group(0)[length:]

        text = pattern.sub(replace, text)
    return text, counts
