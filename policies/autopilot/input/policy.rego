# Missing or mistyped input denies: no rule elsewhere may silently pass on absent fields.
#
# The gate validates every input with pydantic (PolicyInput) before evaluation, so on
# the hot path the input is well formed: one rule with a conjunct per field proves it,
# and the per-field rules that name what is wrong run only when that proof fails (a
# raw or hand-built input). well_formed holds exactly when no per-field rule fires,
# so the guarantee is the old one for a fraction of the work.
package autopilot.input

import rego.v1

well_formed if {
	is_number(input.action.discount_pct)
	input.action.discount_pct >= 0
	input.action.discount_pct <= 100
	is_number(input.action.expected_cost)
	is_number(input.action.hours)
	is_number(input.account.arr)
	is_number(input.account.annual_cost_to_serve)
	is_number(input.account.p1_open)
	is_number(input.ledger.account_spend_quarter)
	is_number(input.ledger.segment_spend_quarter)
	is_number(input.ledger.high_touch_contacts_quarter)
	is_number(input.ledger.active_discount_pct)
	is_string(input.action.tool)
	is_string(input.action.kind)
	is_string(input.action.category)
	is_string(input.action.data_region)
	is_string(input.account.id)
	is_string(input.account.segment)
	is_string(input.account.region)
	is_string(input.agent.name)
	is_string(input.actor.type)
	is_string(input.actor.id)
	is_boolean(input.action.high_touch)
	is_boolean(input.action.significant)
	is_boolean(input.action.contract_change)
	is_array(input.agent.tools)
}

# Only when the proof above fails: say which fields are wrong (the hot path never
# enters these comprehensions).
deny contains violation if {
	not well_formed
	some violation in field_violations
}

field_violations := missing | mistyped | out_of_range

missing := {{"code": "input.missing", "msg": concat("", ["policy input lacks '", part, "'"])} |
	some part in ["action", "account", "agent", "actor", "ledger"]
	not is_object(input[part])
}

mistyped := {{"code": "input.invalid", "msg": concat("", [f[0], ".", f[1], " must be ", f[2]])} |
	some f in typed_fields
	not has_type(input[f[0]][f[1]], f[2])
}

out_of_range := {{"code": "input.invalid", "msg": "action.discount_pct must be between 0 and 100"} |
	is_number(input.action.discount_pct)
	not discount_in_range
}

discount_in_range if {
	input.action.discount_pct >= 0
	input.action.discount_pct <= 100
}

typed_fields := [
	["action", "discount_pct", "a number"], ["action", "expected_cost", "a number"],
	["action", "hours", "a number"], ["account", "arr", "a number"],
	["account", "annual_cost_to_serve", "a number"], ["account", "p1_open", "a number"],
	["ledger", "account_spend_quarter", "a number"], ["ledger", "segment_spend_quarter", "a number"],
	["ledger", "high_touch_contacts_quarter", "a number"], ["ledger", "active_discount_pct", "a number"],
	["action", "tool", "a string"], ["action", "kind", "a string"], ["action", "category", "a string"],
	["action", "data_region", "a string"], ["account", "id", "a string"],
	["account", "segment", "a string"], ["account", "region", "a string"],
	["agent", "name", "a string"], ["actor", "type", "a string"], ["actor", "id", "a string"],
	["action", "high_touch", "true or false"], ["action", "significant", "true or false"],
	["action", "contract_change", "true or false"], ["agent", "tools", "a list"],
]

has_type(value, "a number") if is_number(value)

has_type(value, "a string") if is_string(value)

has_type(value, "true or false") if is_boolean(value)

has_type(value, "a list") if is_array(value)

# Not a schema matter: pydantic cannot know which segments the limits name.
deny contains {"code": "segment.unknown", "msg": sprintf("no limits for segment '%s'", [input.account.segment])} if {
	is_string(input.account.segment)
	not data.autopilot.budget.limits.segments[input.account.segment]
}
