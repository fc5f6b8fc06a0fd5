# Approval routing: each threshold crossed adds the role that must approve, with the
# role's SLA; an item pending past its SLA escalates (returned as obligations).
package autopilot.approval

import rego.v1

cfg := data.autopilot.approval.limits

auto_pct := data.autopilot.discount.limits.segments[input.account.segment].auto_approve_pct

# Guarded: on a non-number OPA and regopy leave `+` undefined, regorus raises an
# evaluation error (a deny for the wrong reason); the input package denies it.
total_pct := input.ledger.active_discount_pct + input.action.discount_pct if {
	is_number(input.ledger.active_discount_pct)
	is_number(input.action.discount_pct)
}

reasons contains ["manager", msg] if {
	input.action.discount_pct > 0
	total_pct > auto_pct
	msg := sprintf("discount %v%% is above the auto-approve limit of %v%%", [total_pct, auto_pct])
}

reasons contains ["finance", msg] if {
	total_pct > cfg.finance_discount_pct
	msg := sprintf("discount %v%% is above the finance threshold of %v%%", [total_pct, cfg.finance_discount_pct])
}

reasons contains ["csm", msg] if {
	input.account.arr >= cfg.csm_arr
	msg := sprintf("account ARR %v is at or above %v", [input.account.arr, cfg.csm_arr])
}

reasons contains ["vp", msg] if {
	input.account.arr >= cfg.vp_arr
	msg := sprintf("account ARR %v is at or above %v", [input.account.arr, cfg.vp_arr])
}

reasons contains ["manager", msg] if {
	input.action.expected_cost > cfg.manager_spend
	msg := sprintf("the action costs %v, above %v", [input.action.expected_cost, cfg.manager_spend])
}

reasons contains ["finance", msg] if {
	input.action.expected_cost > cfg.finance_spend
	msg := sprintf("the action costs %v, above %v", [input.action.expected_cost, cfg.finance_spend])
}

reasons contains ["legal", "the action changes contract terms"] if {
	input.action.contract_change == true
}

reasons contains ["csm", "high-touch contact with the customer"] if {
	input.action.high_touch == true
}

# CPPA ADMT / GDPR Art. 22: a significant automated decision gets human review.
reasons contains ["csm", "significant automated decision (price, offer or downgrade): human review"] if {
	input.action.significant == true
}

required contains {"role": role, "reason": reason, "sla_hours": sla} if {
	some [role, reason] in reasons
	sla := cfg.roles[role].sla_hours
}

obligations contains {"type": "approval_sla", "role": role, "sla_hours": r.sla_hours, "escalate_to": r.escalate_to} if {
	some [role, _] in reasons
	r := cfg.roles[role]
}
