# Money budgets per quarter: per account (a share of its ARR) and per segment.
# The ledger figures come in the input; the policy stays pure.
package autopilot.budget

import rego.v1

seg := data.autopilot.budget.limits.segments[input.account.segment]

account_budget := (input.account.arr * seg.account_quarter_pct_of_arr) / 100

deny contains {"code": "budget.account_exceeded", "msg": msg} if {
	after := input.ledger.account_spend_quarter + input.action.expected_cost
	after > account_budget
	msg := sprintf("account spend this quarter would be %v, above its budget of %v",
		[after, account_budget])
}

deny contains {"code": "budget.segment_exceeded", "msg": msg} if {
	after := input.ledger.segment_spend_quarter + input.action.expected_cost
	after > seg.segment_quarter_budget
	msg := sprintf("%s spend this quarter would be %v, above the segment budget of %v",
		[input.account.segment, after, seg.segment_quarter_budget])
}

deny contains {"code": "budget.negative_cost", "msg": "action.expected_cost must not be negative"} if {
	input.action.expected_cost < 0
}
