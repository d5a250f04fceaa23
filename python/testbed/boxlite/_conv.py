"""pyo3-like argument conversions of the simulator's options and calls: the same exception
types as the real SDK and, where they were observed, the same messages.
"""

from __future__ import annotations

import json
from typing import Any


def _tname(v: Any) -> str:
    return type(v).__name__


def conv_str(arg: str, v: Any, optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be cast as 'str'")
    return v


def conv_bool(arg: str, v: Any, optional: bool = True) -> bool | None:
    if v is None and optional:
        return None
    if not isinstance(v, bool):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be cast as 'bool'")
    return v


def conv_int(arg: str, v: Any, lo: int, hi: int, optional: bool = True) -> int | None:
    if v is None and optional:
        return None
    if not isinstance(v, int):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be interpreted as an integer")
    if v < lo:
        raise OverflowError("number too small to fit in target type")
    if v > hi:
        raise OverflowError("number too large to fit in target type")
    return int(v)


def conv_float(arg: str, v: Any, optional: bool = True) -> float | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"argument '{arg}': must be real number, not {_tname(v)}")
    return float(v)


def conv_str_list(arg: str, v: Any, optional: bool = True) -> list[str] | None:
    if v is None and optional:
        return None
    if isinstance(v, str):
        raise TypeError(f"argument '{arg}': Can't extract `str` to `Vec`")
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be cast as 'Sequence'")
    out = []
    for item in v:
        if not isinstance(item, str):
            raise TypeError(f"argument '{arg}': '{_tname(item)}' object cannot be cast as 'str'")
        out.append(item)
    return out


def _check_seq(arg: str, v: Any) -> None:
    """pyo3's Vec<T> extraction: a str is refused, other non-sequences too."""
    if isinstance(v, str):
        raise TypeError(f"argument '{arg}': Can't extract `str` to `Vec`")
    if not isinstance(v, (list, tuple)):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be cast as 'Sequence'")


def conv_env(arg: str, v: Any, optional: bool = True) -> list[tuple[str, str]] | None:
    if v is None and optional:
        return None
    _check_seq(arg, v)
    out = []
    for item in v:
        if not isinstance(item, tuple):
            raise TypeError(f"argument '{arg}': '{_tname(item)}' object cannot be cast as 'tuple'")
        if len(item) != 2:
            raise ValueError(f"expected tuple of length 2, but got tuple of length {len(item)}")
        for x in item:
            if not isinstance(x, str):
                raise TypeError(f"argument '{arg}': '{_tname(x)}' object cannot be cast as 'str'")
        out.append((item[0], item[1]))
    return out


def conv_instance(arg: str, v: Any, cls: type, optional: bool = True) -> Any:
    if v is None and optional:
        return None
    if not isinstance(v, cls):
        raise TypeError(f"argument '{arg}': '{_tname(v)}' object cannot be cast as '{cls.__name__}'")
    return v


def conv_instance_list(arg: str, v: Any, cls: type) -> list:
    _check_seq(arg, v)
    for item in v:
        conv_instance(arg, item, cls, optional=False)
    return list(v)


def _rs_opt(v: Any) -> str:
    """Render like Rust's Debug for Option<…>."""
    if v is None:
        return "None"
    if isinstance(v, str):
        return f"Some({json.dumps(v)})"
    if isinstance(v, bool):
        return f"Some({str(v).lower()})"
    return f"Some({v})"
