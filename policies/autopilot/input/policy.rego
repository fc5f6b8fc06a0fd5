# Missing or mistyped input denies: no rule elsewhere may silently pass on absent fields.
package autopilot.input

import rego.v1

number_fields := [
	["action", "discount_pct"], ["action", "expected_cost"], ["action", "hours"],
	["account", "arr"], ["account", "annual_cost_to_serve"], ["account", "p1_open"],
	["ledger", "account_spend_quarter"], ["ledger", "segment_spend_quarter"],
	["ledger", "high_touch_contacts_quarter"], ["ledger", "active_discount_pct"],
]

string_fields := [
	["action", "tool"], ["action", "kind"], ["action", "category"], ["action", "data_region"],
	["account", "id"], ["account", "segment"], ["account", "region"],
	["agent", "name"], ["actor", "type"], ["actor", "id"],
]

bool_fields := [["action", "high_touch"], ["action", "significant"], ["action", "contract_change"]]

deny contains {"code": "input.missing", "msg": concat("", ["policy input lacks '", part, "'"])} if {
	some part in ["action", "account", "agent", "actor", "ledger"]
	not is_object(input[part])
}

deny contains {"code": "input.invalid", "msg": concat("", [f[0], ".", f[1], " must be a number"])} if {
	some f in number_fields
	not is_number(input[f[0]][f[1]])
}

deny contains {"code": "input.invalid", "msg": concat("", [f[0], ".", f[1], " must be a string"])} if {
	some f in string_fields
	not is_string(input[f[0]][f[1]])
}

deny contains {"code": "input.invalid", "msg": concat("", [f[0], ".", f[1], " must be true or false"])} if {
	some f in bool_fields
	not is_boolean(input[f[0]][f[1]])
}

deny contains {"code": "input.invalid", "msg": "agent.tools must be a list"} if {
	not is_array(input.agent.tools)
}

deny contains {"code": "input.invalid", "msg": "action.discount_pct must be between 0 and 100"} if {
	is_number(input.action.discount_pct)
	not input.action.discount_pct >= 0
}

deny contains {"code": "input.invalid", "msg": "action.discount_pct must be between 0 and 100"} if {
	is_number(input.action.discount_pct)
	input.action.discount_pct > 100
}

deny contains {"code": "segment.unknown", "msg": sprintf("no limits for segment '%s'", [input.account.segment])} if {
	is_string(input.account.segment)
	not data.autopilot.budget.limits.segments[input.account.segment]
}
