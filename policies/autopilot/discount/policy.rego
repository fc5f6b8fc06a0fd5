# Discount cap by segment and contract term, and the margin floor (the profit red line):
# the net price after every active discount must keep gross margin >= the floor.
# Discounts from several agents on one account stack and count together.
package autopilot.discount

import rego.v1

cfg := data.autopilot.discount.limits

seg := cfg.segments[input.account.segment]

# Guarded: on a non-number OPA and regopy leave `+` undefined, regorus raises an
# evaluation error (a deny for the wrong reason); the input package denies it.
total_pct := input.ledger.active_discount_pct + input.action.discount_pct if {
	is_number(input.ledger.active_discount_pct)
	is_number(input.action.discount_pct)
}

# A longer commitment earns a higher cap (term_months in the offer's args).
term_bonus := cfg.term_bonus_pct[format_int(input.action.args.term_months, 10)] if {
	is_number(input.action.args.term_months)
}

default term_bonus := 0

cap := seg.cap_pct + term_bonus

deny contains {"code": "discount.above_cap", "msg": msg} if {
	input.action.discount_pct > 0
	total_pct > cap
	msg := sprintf("total discount %v%% (this %v%% + active %v%%) is above the %s cap of %v%%",
		[total_pct, input.action.discount_pct, input.ledger.active_discount_pct, input.account.segment, cap])
}

net_price := input.account.arr * (1 - (total_pct / 100))

deny contains {"code": "discount.margin_floor", "msg": msg} if {
	input.action.discount_pct > 0
	net_price > 0
	margin := (net_price - input.account.annual_cost_to_serve) / net_price
	margin < seg.margin_floor
	msg := sprintf("gross margin after the discount would be %v, below the floor of %v",
		[round(margin * 1000) / 1000, seg.margin_floor])
}

deny contains {"code": "discount.margin_floor", "msg": "the discount leaves no revenue"} if {
	input.action.discount_pct > 0
	net_price <= 0
}
