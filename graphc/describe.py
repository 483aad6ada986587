"""What a value is, in words, for error messages: every message that names a wrong
argument's type says it the same way, with its article. Imports nothing of graphc's,
so the frontend, the tracer and the backends can all use it."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VOWELS = frozenset("aeiou")
# letters whose names start with a vowel sound: a, e, ef, aitch, i, el, em, en, o, ar, es, ex (but "you", "why")
_VOWEL_LETTERS = frozenset("aefhilmnorsx")
# words spelled with a vowel but said with a consonant (a uint8, a unique, a one, a European) ...
_SAID_CONSONANT = ("uni", "use", "usa", "usu", "usi", "uti", "uint", "ufunc", "ubyte", "ushort", "ulong", "uuid",
                   "utf", "url", "uri", "eu", "ewe", "one", "once", "ouija")
_BUT_VOWEL = ("unin", "unim", "eul", "oner")  # ... except these (an uninitialised, an Euler, an onerous)
# ... and with a silent h (an hour)
_SILENT_H = ("hour", "honest", "honor", "honour", "heir")
# consonant pairs that begin English words: a lowercase name starting with another pair, or with a consonant
# and a digit, is read letter by letter (an nd..., an mx..., an h5py, an lxml, an sklearn)
_ONSETS = frozenset("bl br ch cl cr dr dw fl fr gh gl gn gr kl kn kr ph pl pn pr ps pt qu rh sc sh sl sm sn sp sq "
                    "st sv sw th tr ts tw vl wh wr".split())
_WORD = re.compile(r"[A-Za-z0-9]+")


def _letters(word: str) -> str | None:
    """The leading letters of `word` when they are read one by one (an initialism: SVD, HDF5,
    the ND of NDArray, h5py, mpi4py), else None (a word said as one: NASA, SIMD, Array)."""
    caps = len(word) - len(word.lstrip(_UPPER))
    if caps >= 2:
        if caps < len(word) and word[caps].islower():  # NDArray: ND, then the word Array
            return word[:caps - 1]
        head = word[:caps]
        said = len(head) >= 3 and head[0] not in "AEIOU" and head[1] in "AEIOUY" and head[2] not in "AEIOUY"
        return None if said else head
    w = word.lower()
    if len(w) == 1:
        return w
    if w[0] in _VOWELS or w[1] in "aeiouy":
        return None
    return w if w[1].isdigit() or w[:2] not in _ONSETS else None


def article(text: str) -> str:
    """'a' or 'an' before `text`, by how its first word is said: an ndarray, an xarray, an HDF5
    file, an SVD, an Array, an hour, an 8-bit, a uint8, a Python ..., a one, a dask Array."""
    m = _WORD.search(text)
    if m is None:
        return "a"
    word = m.group()
    low = word.lower()
    if low[0].isdigit():  # eight, eleven, eighteen, eighty, eleven thousand: said with a vowel
        digits = re.match(r"\d+", low).group()  # type: ignore[union-attr]
        return "an" if digits[0] == "8" or (digits[:2] in ("11", "18") and len(digits) % 3 == 2) else "a"
    letters = _letters(word)
    if letters is not None:
        return "an" if letters[0].lower() in _VOWEL_LETTERS else "a"
    if low.startswith(_SAID_CONSONANT) and not low.startswith(_BUT_VOWEL):
        return "a"
    if low.startswith(_SILENT_H) or low[0] == "x":  # xarray, xgboost: said "ex"
        return "an"
    return "an" if low[0] in _VOWELS else "a"


def with_article(text: str) -> str:
    """`text` after its article: with_article('Array') == 'an Array'."""
    return f"{article(text)} {text}"


def describe(x: Any) -> str:
    """What `x` is, for messages, with its article: 'a Python str', 'a Python complex
    number', 'an ndarray of complex128', 'a NumPy complex128 scalar', 'a dask Array
    (dask.array.core.Array)', 'an xarray DataArray', 'a traced value (a graphc Tracer)',
    and a class of the running script by its own name: 'an Array (__main__.Array)'."""
    t = type(x)
    if getattr(t, "graphc_tracer", False):  # graphc.trace.Tracer (not imported: trace imports this)
        return "a traced value (a graphc Tracer)"
    if isinstance(x, np.ndarray):
        return f"an ndarray of {x.dtype}"
    if isinstance(x, np.generic):
        return f"a NumPy {t.__name__} scalar"
    module, name = t.__module__ or "", t.__qualname__
    if module == "builtins":
        return {"complex": "a Python complex number", "NoneType": "None"}.get(name, f"a Python {name}")
    top = module.split(".")[0]
    if not top or top.startswith("_"):  # __main__, or no module: the class names itself
        return with_article(f"{name} ({module}.{name})" if module else name)
    full = f" ({module}.{name})" if module != top else ""
    return with_article(f"{top} {name}{full}")
