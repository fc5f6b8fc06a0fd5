"""The time-based split: train on earlier months, validate on later ones, see
nothing after the cutoff.

A random split by account over the same period let the model validate on days it
had, in effect, trained on (the same market, the same renewal season), and gave a
validation AUC of 0.97 that fell to 0.67 on the next period (issue #15). Here:

- nothing after `cutoff` is read, labels included: a snapshot on day d needs its
  whole horizon (d + horizon) on or before the cutoff;
- validation snapshots lie in the last `validate_months` before the cutoff;
- training snapshots end `horizon` days before validation starts (a purge gap), so
  that no training label looks into the validation period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

MONTH = 30  # days; a month of validation is 30 snapshot days


@dataclass(frozen=True)
class TimeSplit:
    train_first: date
    train_last: date  # last training snapshot day
    validate_first: date
    validate_last: date  # last validation snapshot day (its horizon ends at the cutoff)
    cutoff: date

    def as_card(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def plan_split(
    *,
    history_start: date,
    history_end: date,
    cutoff: date | None,
    validate_months: int,
    horizon: int,
    window: int,
) -> TimeSplit:
    """The split for a history; ValueError naming the field when it cannot hold."""
    if validate_months < 1:
        raise ValueError("validate_months: must be at least 1")
    cutoff = cutoff or history_end
    if cutoff > history_end:
        raise ValueError(f"cutoff: {cutoff} is after the store's last day of history {history_end}")
    validate_last = cutoff - timedelta(days=horizon)
    validate_first = validate_last - timedelta(days=validate_months * MONTH - 1)
    train_last = validate_first - timedelta(days=horizon + 1)
    train_first = history_start + timedelta(days=window - 1)
    if train_last < train_first:
        raise ValueError(
            f"cutoff: {cutoff} leaves no training period: the history starts {history_start}, a "
            f"feature window is {window} days, validation takes {validate_months} month(s) and "
            f"each label {horizon} days; use a later cutoff or fewer --validate-months"
        )
    return TimeSplit(train_first, train_last, validate_first, validate_last, cutoff)
