"""Stripe's proration arithmetic for a price change, to the second (https://docs.stripe.com/billing/subscriptions/prorations).

At `at`, inside the item's current period [start, end): the unused time on the old price is credited
(a negative line) and the remaining time on the new price is charged, each `amount × (end − at) / (end − start)`
rounded to the nearest cent. A new price with another interval resets the billing cycle to `at`: the old
price's unused time is still credited, and the new price is charged for a whole new period (not a proration).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Line:
    """One line of the change's invoice: its amount (negative for a credit), period and whether it is a proration."""

    amount: int
    start: int
    end: int
    proration: bool
    credit: bool


def prorated(amount: int, at: int, start: int, end: int) -> int:
    """`amount` for the part of [start, end) left after `at`, rounded half up to a whole cent."""
    return (2 * amount * (end - at) + (end - start)) // (2 * (end - start))


def change_lines(old_amount: int, new_amount: int, at: int, start: int, end: int, same_interval: bool,
                 new_end: int) -> list[Line]:
    """The credit for the old price and the charge for the new one (`new_end`: a new period's end, when
    the interval changes)."""
    lines = [Line(-prorated(old_amount, at, start, end), at, end, True, True)]
    if same_interval:
        lines.append(Line(prorated(new_amount, at, start, end), at, end, True, False))
    else:
        lines.append(Line(new_amount, at, new_end, False, False))
    return lines


def settle(total: int, balance: int) -> tuple[int, int]:
    """(amount_due, ending_balance) of an invoice of `total` for a customer whose balance is `balance`
    (negative: credit owed to the customer). A credit pays what it can; what is left over stays a credit."""
    net = total + balance
    return max(0, net), min(0, net)
