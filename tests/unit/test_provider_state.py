"""The payment state: a pure function of the set of observations, in any arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

import hypothesis.strategies as st
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings

from payhook.providers.model import EventVerdict, Observation, Observed, PaymentState
from payhook.providers.state import PaymentSnapshot, fold, judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = PaymentState


def seen(number: int, **fields: object) -> Observed:
    """Observation number `number`, occurring `number` seconds after T0."""
    observation = Observation(**fields)  # type: ignore[arg-type]
    return Observed(observation, T0 + timedelta(seconds=number), f"evt_{number:03d}")


def state_of(*items: Observed) -> PaymentState | None:
    snapshot = fold(items)
    return snapshot.payment_state if snapshot else None


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([S.PENDING], S.PENDING),
        ([S.PENDING, S.AUTHORIZED], S.AUTHORIZED),
        ([S.AUTHORIZED, S.CAPTURED], S.CAPTURED),
        ([S.CAPTURED, S.AUTHORIZED], S.CAPTURED),  # a late amount_capturable_updated
        ([S.FAILED, S.CAPTURED], S.CAPTURED),  # a retried payment
        ([S.CAPTURED, S.FAILED], S.CAPTURED),  # the declined attempt's event arrives late
        ([S.FAILED, S.AUTHORIZED], S.AUTHORIZED),
        ([S.AUTHORIZED, S.CANCELED], S.CANCELED),
        ([S.FAILED, S.CANCELED], S.CANCELED),
        ([S.CANCELED, S.CAPTURED], S.CAPTURED),
        ([S.PENDING, S.FAILED], S.FAILED),
    ],
)
def test_base_state_precedence(states: list[PaymentState], expected: PaymentState) -> None:
    items = [
        seen(n, state=state, amount_minor=1000, currency="USD") for n, state in enumerate(states)
    ]
    assert state_of(*items) is expected


def test_no_base_state_means_no_snapshot() -> None:
    refund = seen(1, refund_id="re_1", refund_minor=500, currency="USD")
    dispute = seen(2, dispute_opened=True)
    assert fold([refund, dispute]) is None
    assert fold([]) is None


def test_refund_before_payment_is_applied_when_the_payment_arrives() -> None:
    refund = seen(1, refund_id="re_1", refund_minor=400, currency="USD")
    paid = seen(2, state=S.CAPTURED, amount_minor=1000, currency="USD", source_account="cus_1")
    assert fold([refund, paid]) == PaymentSnapshot(
        payment_state=S.PARTIALLY_REFUNDED,
        amount_minor=1000,
        currency="USD",
        amount_refunded_minor=400,
        disputed=False,
        source_account="cus_1",
        destination_account=None,
    )


def test_refunds_sum_per_distinct_id_and_failed_ones_count_for_nothing() -> None:
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    first = seen(1, refund_id="re_1", refund_minor=300)
    first_again = seen(2, refund_id="re_1", refund_minor=300)  # refund.updated of the same one
    second = seen(3, refund_id="re_2", refund_minor=200)
    failed = seen(4, refund_id="re_3", refund_minor=500)
    failed_later = seen(5, refund_id="re_3", refund_minor=500, refund_failed=True)
    snapshot = fold([paid, first, first_again, second, failed, failed_later])
    assert snapshot is not None
    assert snapshot.amount_refunded_minor == 500
    assert snapshot.payment_state is S.PARTIALLY_REFUNDED


def test_the_cumulative_figure_counts_refunds_whose_own_events_are_missing() -> None:
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    one_refund = seen(1, refund_id="re_1", refund_minor=300)
    charge_refunded = seen(2, state=S.CAPTURED, amount_minor=1000, refunded_total_minor=1000)
    snapshot = fold([paid, one_refund, charge_refunded])
    assert snapshot is not None
    assert (snapshot.payment_state, snapshot.amount_refunded_minor) == (S.REFUNDED, 1000)


def made(number: int) -> int:
    """The `created` of a refund made `number` seconds after T0, as a provider says it."""
    return int((T0 + timedelta(seconds=number)).timestamp())


def refunded_minor(*items: Observed) -> tuple[PaymentState, int]:
    snapshot = fold(items)
    assert snapshot is not None
    return snapshot.payment_state, snapshot.amount_refunded_minor


def test_a_refund_failing_after_a_cumulative_figure_counted_it_is_taken_out() -> None:
    """A refund to a closed card fails days later, and no charge event says so: the refund's
    own failure takes it out of the figure that counted it."""
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    charge_refunded = seen(10, state=S.CAPTURED, refunded_total_minor=1000)  # re_1, full
    fails = seen(
        99, refund_id="re_1", refund_minor=1000, refund_failed=True, refund_created_at=made(10)
    )
    assert refunded_minor(paid, charge_refunded) == (S.REFUNDED, 1000)
    assert refunded_minor(paid, charge_refunded, fails) == (S.CAPTURED, 0)


def test_only_the_figures_that_counted_a_failed_refund_lose_it() -> None:
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    first = seen(10, state=S.CAPTURED, refunded_total_minor=300)  # re_1 (300), made at 10
    both = seen(20, state=S.CAPTURED, refunded_total_minor=700)  # re_1 and re_2 (400), made at 20
    fails = seen(
        30, refund_id="re_2", refund_minor=400, refund_failed=True, refund_created_at=made(20)
    )
    after = seen(40, state=S.CAPTURED, refunded_total_minor=500)  # re_1 and re_3 (200): re_2 gone
    assert refunded_minor(paid, first, both, fails) == (S.PARTIALLY_REFUNDED, 300)
    # A figure said after the failure no longer counts it: nothing is taken out of it.
    assert refunded_minor(paid, first, both, fails, after) == (S.PARTIALLY_REFUNDED, 500)
    # A figure said before the failed refund was made never counted it.
    early = seen(
        30, refund_id="re_2", refund_minor=400, refund_failed=True, refund_created_at=made(25)
    )
    assert refunded_minor(paid, first, both, early) == (S.PARTIALLY_REFUNDED, 700)


def test_a_failure_without_times_leaves_the_cumulative_figure_as_it_was_said() -> None:
    """Where the refund's making is not known, the figure may or may not have counted it."""
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    charge_refunded = seen(10, state=S.CAPTURED, refunded_total_minor=1000)
    fails = seen(99, refund_id="re_1", refund_minor=1000, refund_failed=True)
    assert refunded_minor(paid, charge_refunded, fails) == (S.REFUNDED, 1000)


def test_a_failed_capture_takes_its_capture_back_out_in_any_order() -> None:
    """Adyen's CAPTURE_FAILED: the scheme rejected the capture and no money arrives, but the
    authorisation still stands; the capture's own id says which capture failed."""
    authorised = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="EUR")
    captured = seen(10, state=S.CAPTURED, amount_minor=1000, currency="EUR", capture_id="cap_1")
    failed = seen(20, capture_id="cap_1", capture_failed=True)
    assert state_of(authorised, captured) is S.CAPTURED
    for order in permutations([authorised, captured, failed]):
        snapshot = fold(order)
        assert snapshot is not None
        assert (snapshot.payment_state, snapshot.amount_minor) == (S.AUTHORIZED, 1000)
        assert judge(order[:1], order[1:]).after == snapshot


def test_another_capture_that_did_not_fail_still_counts() -> None:
    authorised = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="EUR")
    rejected = seen(10, state=S.CAPTURED, amount_minor=1000, currency="EUR", capture_id="cap_1")
    failed = seen(20, capture_id="cap_1", capture_failed=True)
    again = seen(30, state=S.CAPTURED, amount_minor=1000, currency="EUR", capture_id="cap_2")
    for order in permutations([authorised, rejected, failed, again]):
        assert state_of(*order) is S.CAPTURED


def test_a_capture_failed_before_its_authorisation_is_seen_leaves_the_payment_authorized() -> None:
    """Adyen took the capture request, so the payment was authorised; the failed capture's
    amount stands in only until the authorisation says the payment's (a partial capture's is
    less)."""
    captured = seen(10, state=S.CAPTURED, amount_minor=400, currency="EUR", capture_id="cap_1")
    failed = seen(20, capture_id="cap_1", capture_failed=True)
    authorised = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="EUR")
    assert fold([failed, captured]) == fold([captured, failed])
    snapshot = fold([captured, failed])
    assert snapshot is not None
    assert (snapshot.payment_state, snapshot.amount_minor) == (S.AUTHORIZED, 400)
    snapshot = fold([captured, failed, authorised])
    assert snapshot is not None
    assert (snapshot.payment_state, snapshot.amount_minor) == (S.AUTHORIZED, 1000)
    assert fold([failed]) is None  # the failure alone says nothing of the payment


def test_partial_captures_of_one_authorisation_add_up_in_any_order() -> None:
    """Adyen's multiple partial captures: each CAPTURE has its own id and its own amount."""
    authorised = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="EUR")
    first = seen(10, state=S.CAPTURED, amount_minor=300, currency="EUR", capture_id="cap_1")
    second = seen(20, state=S.CAPTURED, amount_minor=700, currency="EUR", capture_id="cap_2")
    first_again = seen(30, state=S.CAPTURED, amount_minor=300, currency="EUR", capture_id="cap_1")
    for order in permutations([authorised, first, second, first_again]):
        snapshot = fold(order)
        assert snapshot is not None
        assert (snapshot.payment_state, snapshot.amount_minor) == (S.CAPTURED, 1000)
    # Only the first so far: what is captured is 300, not the authorised 1000.
    assert fold([authorised, first]).amount_minor == 300  # type: ignore[union-attr]


def test_a_failed_partial_capture_leaves_the_others_sum() -> None:
    authorised = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="EUR")
    first = seen(10, state=S.CAPTURED, amount_minor=300, currency="EUR", capture_id="cap_1")
    second = seen(20, state=S.CAPTURED, amount_minor=700, currency="EUR", capture_id="cap_2")
    failed = seen(30, capture_id="cap_2", capture_failed=True)
    refund = seen(40, refund_id="re_1", refund_minor=300)
    for order in permutations([authorised, first, second, failed, refund]):
        snapshot = fold(order)
        assert snapshot is not None
        assert (snapshot.payment_state, snapshot.amount_minor) == (S.REFUNDED, 300)


def test_refunds_do_not_change_a_payment_that_is_not_captured() -> None:
    authorized = seen(0, state=S.AUTHORIZED, amount_minor=1000, currency="USD")
    refund = seen(1, refund_id="re_1", refund_minor=1000)
    snapshot = fold([authorized, refund])
    assert snapshot is not None
    assert (snapshot.payment_state, snapshot.amount_refunded_minor) == (S.AUTHORIZED, 1000)


def test_disputed_once_opened_or_closed_and_stays() -> None:
    paid = seen(0, state=S.CAPTURED, amount_minor=1000, currency="USD")
    assert fold([paid, seen(1, dispute_opened=True)]).disputed  # type: ignore[union-attr]
    assert fold([paid, seen(1, dispute_closed=True)]).disputed  # type: ignore[union-attr]
    assert not fold([paid]).disputed  # type: ignore[union-attr]


def test_amount_and_accounts_come_from_the_highest_ranked_observation() -> None:
    created = seen(5, state=S.PENDING, amount_minor=1000, currency="USD", source_account="pm_1")
    captured = seen(1, state=S.CAPTURED, amount_minor=600, currency="USD", source_account="cus_1")
    refund = seen(9, refund_id="re_1", refund_minor=100, currency="USD")
    snapshot = fold([created, captured, refund])
    assert snapshot is not None
    assert (snapshot.amount_minor, snapshot.source_account) == (600, "cus_1")


def test_verdicts_in_arrival_order() -> None:
    refund = seen(3, refund_id="re_1", refund_minor=500)
    paid = seen(2, state=S.CAPTURED, amount_minor=1000, currency="USD")
    late = seen(1, state=S.AUTHORIZED, amount_minor=1000, currency="USD")
    verdicts, _, snapshot = judge([], [refund, paid, late])
    assert verdicts == [EventVerdict.WAITING, EventVerdict.APPLIED, EventVerdict.STALE]
    assert snapshot is not None
    assert snapshot.payment_state is S.PARTIALLY_REFUNDED
    again, _, _ = judge([refund, paid, late], [seen(4, dispute_opened=True)])
    assert again == [EventVerdict.APPLIED]


# -- the property: any order of the same events gives the same snapshot -----------------------

observations = st.builds(
    Observation,
    state=st.none() | st.sampled_from([S.PENDING, S.AUTHORIZED, S.CAPTURED, S.FAILED, S.CANCELED]),
    amount_minor=st.none() | st.integers(0, 10_000),
    currency=st.none() | st.sampled_from(["USD", "JPY"]),
    refund_id=st.none() | st.sampled_from(["re_1", "re_2", "re_3"]),
    refund_minor=st.none() | st.integers(0, 10_000),
    refund_failed=st.booleans(),
    refund_created_at=st.none() | st.integers(0, 5).map(made),
    capture_id=st.none() | st.sampled_from(["cap_1", "cap_2"]),
    capture_failed=st.booleans(),
    refunded_total_minor=st.none() | st.integers(0, 10_000),
    dispute_opened=st.booleans(),
    dispute_closed=st.booleans(),
    source_account=st.none() | st.sampled_from(["cus_1", "cus_2"]),
    destination_account=st.none() | st.sampled_from(["acct_1", "acct_2"]),
)
events = st.lists(
    st.tuples(observations, st.none() | st.integers(0, 5)), min_size=0, max_size=12
).map(
    lambda pairs: [
        Observed(obs, None if at is None else T0 + timedelta(seconds=at), f"evt_{n:02d}")
        for n, (obs, at) in enumerate(pairs)
    ]
)


@hypothesis_settings(database=None, deadline=None, max_examples=200)
@given(items=events, data=st.data())
def test_any_arrival_order_folds_to_the_same_snapshot(
    items: list[Observed], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(items))
    assert fold(shuffled) == fold(items)
    # Event by event, as the ingest sees them, the last snapshot is the same too.
    _, _, stepwise = judge(shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2 :])
    assert stepwise == fold(items)


@hypothesis_settings(database=None, deadline=None, max_examples=200)
@given(items=events, data=st.data())
def test_a_repeated_event_changes_nothing(items: list[Observed], data: st.DataObject) -> None:
    if items:
        repeated = data.draw(st.sampled_from(items))
        assert fold([*items, repeated]) == fold(items)
