"""PII removal: every generated instance of each type is replaced by its placeholder; checksum-
invalid numbers and ordinary digit strings (dates, versions, prices, times) are left alone."""
import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.data import remove_pii
from minillm.data.pii import IBAN_LENGTHS, PLACEHOLDERS, iban_valid, luhn_valid


def luhn_complete(prefix_digits):
    """Append the check digit that makes the number Luhn-valid."""
    for d in "0123456789":
        if luhn_valid(prefix_digits + d):
            return prefix_digits + d
    raise AssertionError("unreachable: one check digit always works")


def gen_card(rng):
    prefix, length = [("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16), ("4", 13),
                      ("35", 19)][rng.integers(7)]
    body = prefix + "".join(rng.choice(list("0123456789"), length - len(prefix) - 1))
    number = luhn_complete(body)
    sep = ["", " ", "-"][rng.integers(3)]
    if length == 16:
        return sep.join(number[i:i + 4] for i in range(0, 16, 4)), number
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]]), number
    return number, number


def gen_iban(rng):
    cc = sorted(IBAN_LENGTHS)[rng.integers(len(IBAN_LENGTHS))]
    bban = "".join(rng.choice(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), IBAN_LENGTHS[cc] - 4))
    num = int("".join(str(int(c, 36)) for c in bban + cc + "00"))
    compact = f"{cc}{98 - num % 97:02d}{bban}"
    assert iban_valid(compact)
    spaced = " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))
    return (spaced if rng.integers(2) else compact), compact


def gen_phone(rng):
    d = lambda n: "".join(rng.choice(list("0123456789"), n))
    forms = [f"+1 ({d(3)}) {d(3)}-{d(4)}", f"+44 20 {d(4)} {d(4)}", f"+49 30 {d(6)}",
             f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+91 {d(5)} {d(5)}", f"+86 138 {d(4)} {d(4)}",
             f"+81-3-{d(4)}-{d(4)}", f"+7 495 {d(3)}-{d(2)}-{d(2)}", f"+61.2.{d(4)}.{d(4)}",
             f"({d(3)}) {d(3)}-{d(4)}", f"{d(3)}-{d(3)}-{d(4)}", f"{d(3)}.{d(3)}.{d(4)}",
             f"1-800-{d(3)}-{d(4)}", f"+{d(11)}"]
    return forms[rng.integers(len(forms))]


def gen_ssn(rng):
    area = int(rng.integers(1, 900))
    while area == 666:
        area = int(rng.integers(1, 900))
    return f"{area:03d}-{int(rng.integers(1, 100)):02d}-{int(rng.integers(1, 10000)):04d}"


def gen_email(rng):
    name = "".join(rng.choice(list("abcdefghij.xyz_01"), rng.integers(1, 12))).strip(".") or "a"
    return f"{name}@{['example.com', 'mail.co.uk', 'uni-x.edu', 'a.b.io'][rng.integers(4)]}"


def gen_ipv4(rng):
    return ".".join(str(int(x)) for x in rng.integers(0, 256, 4))


def gen_ipv6(rng):
    addr = ipaddress.IPv6Address(int(rng.integers(0, 2**62)) << 64 | int(rng.integers(0, 2**16)))
    return addr.compressed if rng.integers(2) else addr.exploded


GENERATORS = {"email": gen_email, "iban": lambda r: gen_iban(r)[0], "ipv6": gen_ipv6,
              "ipv4": gen_ipv4, "phone": gen_phone, "credit_card": lambda r: gen_card(r)[0],
              "ssn": gen_ssn}
TEMPLATES = ["Contact: {}.", "({})", "{}", "send to {} today", "value={};", "Line one\n{}\nend"]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(sorted(GENERATORS)),
       template=st.sampled_from(TEMPLATES))
def test_every_generated_instance_is_replaced(seed, kind, template):
    rng = np.random.default_rng(seed)
    value = GENERATORS[kind](rng)
    out, counts = remove_pii(template.format(value))
    assert out == template.format(PLACEHOLDERS[kind]), (value, out)
    assert counts[kind] == 1 and sum(counts.values()) == 1


def test_many_instances_of_all_types_in_one_document_are_counted():
    rng = np.random.default_rng(0)
    parts, want = [], {k: 0 for k in PLACEHOLDERS}
    for i in range(300):
        kind = sorted(GENERATORS)[i % len(GENERATORS)]
        parts.append(f"item {i}: {GENERATORS[kind](rng)} (see above).")
        want[kind] += 1
    out, counts = remove_pii("\n".join(parts))
    assert counts == want
    for line in out.splitlines():
        assert sum(p in line for p in PLACEHOLDERS.values()) == 1, line


LEAVE_ALONE = [
    "Released on 2024-01-15, patched 15/01/2024 and 12.05.2023 at 12:30:45.",
    "Python 3.11.7 and numpy 2.4.6; version v1.2.3 of the spec; build 10.0.19041.",
    "It costs $1,299.99 or €45.00 (was 1 999,00 kr); 3.14159 is pi; 1e-6 is small.",
    "Order 12345, ISBN 978-3-16-148410-0, page 123-456, the years 1999-2004, 50%.",
    "Slices a[::2] and b[1::3], ratio 16:9, time 09:15, C++ std::vector<int>.",
    "Call extension 4521 or room 2B; the 4th of July; 100 000 people; 24/7.",
]


@pytest.mark.parametrize("text", LEAVE_ALONE)
def test_ordinary_digit_strings_are_left_alone(text):
    out, counts = remove_pii(text)
    assert out == text and sum(counts.values()) == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_luhn_invalid_cards_and_bad_iban_checksums_are_left_alone(seed):
    rng = np.random.default_rng(seed)
    card, digits = gen_card(rng)
    last = str((int(digits[-1]) + int(rng.integers(1, 10))) % 10)   # any other check digit
    bad_card = card[:-1] + last
    assert not luhn_valid(digits[:-1] + last)
    iban, compact = gen_iban(rng)
    bad_iban = iban[:2] + f"{(int(iban[2:4]) + int(rng.integers(1, 97))) % 97 + 2:02d}"[-2:] + iban[4:]
    if iban_valid(bad_iban.replace(" ", "")):
        return                                  # the perturbed check digits happened to be valid
    for text in (f"card {bad_card} here", f"IBAN {bad_iban} here"):
        out, counts = remove_pii(text)
        assert counts["credit_card"] == 0 and counts["iban"] == 0, (text, out)


def test_selected_types_and_errors():
    text = "mail a@b.com from 10.0.0.1"
    out, counts = remove_pii(text, types=["email"])
    assert out == "mail <EMAIL> from 10.0.0.1" and counts == {"email": 1}
    with pytest.raises(ValueError, match="types"):
        remove_pii(text, types=["passport"])
    with pytest.raises(TypeError, match="text"):
        remove_pii(b"bytes")
