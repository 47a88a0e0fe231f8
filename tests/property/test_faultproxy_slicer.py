"""Properties of the slicer's cut points and of attribute parsing, for any input."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.faultproxy.errors import ApiError
from harness.faultproxy.randomness import RandomSource
from harness.faultproxy.toxic_chain import ToxicChain
from harness.faultproxy.toxics.slicer import slice_bounds


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=20_000),
    average=st.integers(min_value=1, max_value=2_000),
    variation_ratio=st.floats(min_value=0.0, max_value=0.99),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_slices_cover_the_chunk_exactly(
    size: int, average: int, variation_ratio: float, seed: int
) -> None:
    variation = int(average * variation_ratio)
    cuts = slice_bounds(size, average, variation, RandomSource(seed, "prop"))
    assert cuts[0] == 0 and cuts[-1] == size
    sizes = [b - a for a, b in itertools.pairwise(cuts)]
    assert all(s <= average + variation for s in sizes)
    if size:
        assert all(s >= 1 for s in sizes)
    assert cuts == slice_bounds(size, average, variation, RandomSource(seed, "prop"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["type", "name", "stream", "toxicity", "attributes"]), json_values
    )
    | json_values
)
def test_any_toxic_body_is_accepted_or_rejected_with_an_api_error(body: Any) -> None:
    chain = ToxicChain(seed=0, proxy_name="p")
    try:
        toxic = chain.add(body)
    except ApiError as exc:
        assert exc.status in (400, 409)
        return
    assert toxic.to_json()["type"] == body["type"]
    assert all(isinstance(v, int) and v >= 0 for v in toxic.toxic.attributes.values())
