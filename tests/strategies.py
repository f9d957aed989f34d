"""Hypothesis strategies the tests share."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_values(*, nan: bool, max_list: int, max_leaves: int) -> st.SearchStrategy[Any]:
    """Any JSON value: null, booleans, integers past 64 bits, floats (NaN and infinities where
    ``nan``: what Python's json writes, though JSON has no such token), text, and lists and
    objects of them."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=nan, allow_infinity=nan)
        | st.text(max_size=12)
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=max_list)
            | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
