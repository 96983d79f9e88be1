"""Kubernetes resource quantities, pure: parse them, and write them as the API server stores them.

The server canonicalises every quantity it stores (`nvidia.com/gpu: 1` comes back as "1",
"8192Mi" as "8Gi", "5000" as "5k", "0.5" as "500m"). Rendering the canonical string means the
object we want and the object we read back are equal, so an idle pass writes nothing. This follows
apimachinery's resource.Quantity (ParseQuantity, CanonicalizeBytes); the tests check it against
the kubernetes client's parser and against the real server.
"""

from __future__ import annotations

import decimal
import re
from enum import Enum

_NUMBER = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_BINARY_SUFFIX = {power: suffix for suffix, power in _BINARY.items()}
_NANO = decimal.Decimal("1e-9")
_MAX = decimal.Decimal(2**63 - 1)  # the server caps quantities at the largest int64
_CONTEXT = decimal.Context(prec=80)  # exact for every quantity the server can hold


class Format(Enum):
    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


class QuantityError(ValueError):
    pass


def parse(value: int | str) -> tuple[decimal.Decimal, Format]:
    """The exact value (rounded up to a nano unit, as the server does) and the suffix family."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return _bounded(decimal.Decimal(value)), Format.DECIMAL_SI
    match = _NUMBER.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise QuantityError(f"not a quantity: {value!r}")
    number, suffix = _CONTEXT.create_decimal(match.group(1)), match.group(2)
    if suffix in _BINARY:
        amount, form = number * (1024 ** _BINARY[suffix]), Format.BINARY_SI
    elif suffix in _DECIMAL:
        amount, form = number.scaleb(_DECIMAL[suffix], _CONTEXT), Format.DECIMAL_SI
    elif (exponent := _EXPONENT.match(suffix)) is not None:
        amount, form = number.scaleb(int(exponent.group(1)), _CONTEXT), Format.DECIMAL_EXPONENT
    else:
        raise QuantityError(f"not a quantity: {value!r} (unknown suffix {suffix!r})")
    amount = _bounded(amount)
    if form is Format.BINARY_SI and 0 < abs(amount) < 1:
        form = Format.DECIMAL_SI
    return amount, form


def _bounded(amount: decimal.Decimal) -> decimal.Decimal:
    # Non-zero values round away from zero to a whole nano unit: asking for a little gets a little.
    sign = -1 if amount < 0 else 1
    size = min(abs(amount), _MAX).quantize(_NANO, rounding=decimal.ROUND_UP, context=_CONTEXT)
    return size * sign


def canonical(value: int | str) -> str:
    """The string the API server stores for `value`: `canonical(1) == "1"`, `"1000m"` -> "1"."""
    amount, form = parse(value)
    if amount == 0:
        return "0"
    if form is Format.BINARY_SI and (abs(amount) < 1024 or amount != amount.to_integral_value()):
        form = Format.DECIMAL_SI  # below 1Ki or a fraction of a byte: a binary suffix would round
    if form is Format.BINARY_SI:
        whole, power = int(amount), 0
        while whole % 1024 == 0 and power < max(_BINARY_SUFFIX):
            whole, power = whole // 1024, power + 1
        return f"{whole}{_BINARY_SUFFIX.get(power, '')}"
    # A mantissa with no trailing zeros, then the exponent brought down to a multiple of three.
    mantissa, exponent = int(amount.scaleb(9, _CONTEXT)), -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    shift = exponent % 3
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    if form is Format.DECIMAL_EXPONENT:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"


def equal(a: object, b: object) -> bool:
    """Two quantities of the same value, however written ("1", 1, "1000m"); else plain equality."""
    if isinstance(a, int | str) and isinstance(b, int | str):
        try:
            return parse(a)[0] == parse(b)[0]
        except QuantityError:
            pass
    return a == b
