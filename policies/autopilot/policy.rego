# The decision every action passes before it executes.
# Result: {allow, require_approval, deny: [{code, msg}], approval: [{role, reason}], obligations}.
# Codes and reasons live in the rule bodies (see policies/README.md for the code table).
# Rules are written so that missing input denies; it never silently passes.
# regopy note: sprintf only over input values; regopy's compiled bundles quote the
# strings that object.get defaults produce, which breaks the JSON result.
package autopilot

import rego.v1

required_fields := ["action", "account", "agent", "actor", "ledger"]

cfg := data.autopilot.limits

segment := cfg.segments[input.account.segment]

deny contains {"code": "input.missing", "msg": sprintf("policy input lacks '%s'", [field])} if {
	some field in required_fields
	not is_object(input[field])
}

deny contains {"code": "input.invalid", "msg": "action.discount_pct must be a number"} if {
	not is_number(input.action.discount_pct)
}

deny contains {"code": "input.invalid", "msg": "account.arr must be a number"} if {
	not is_number(input.account.arr)
}

deny contains {"code": "segment.unknown", "msg": sprintf("no limits for segment '%s'", [input.account.segment])} if {
	is_string(input.account.segment)
	not segment
}

deny contains {"code": "input.missing", "msg": "account.segment is missing"} if {
	not is_string(input.account.segment)
}

deny contains {"code": "tool.not_granted", "msg": sprintf("agent '%s' is not granted tool '%s'", [input.agent.name, input.action.tool])} if {
	is_string(input.action.tool)
	not input.action.tool in object.get(input.agent, "tools", [])
}

deny contains {"code": "input.missing", "msg": "action.tool is missing"} if {
	not is_string(input.action.tool)
}

deny contains {"code": "discount.above_cap", "msg": msg} if {
	input.action.discount_pct > segment.discount_cap_pct
	msg := sprintf(
		"discount %v%% is above the %s cap of %v%%",
		[input.action.discount_pct, input.account.segment, segment.discount_cap_pct],
	)
}

deny contains {"code": "consent.opted_out", "msg": "the recipient opted out of automated messages"} if {
	input.action.recipient_opted_out == true
}

approval contains {"role": "manager", "reason": msg} if {
	input.action.discount_pct > segment.auto_approve_discount_pct
	msg := sprintf(
		"discount %v%% is above the auto-approve limit of %v%%",
		[input.action.discount_pct, segment.auto_approve_discount_pct],
	)
}

approval contains {"role": "csm", "reason": msg} if {
	input.account.arr >= cfg.approval.arr_threshold
	msg := sprintf("account ARR %v is at or above %v", [input.account.arr, cfg.approval.arr_threshold])
}

allow := count(deny) == 0

default require_approval := false

require_approval if {
	allow
	count(approval) > 0
}

decision := {
	"allow": allow,
	"require_approval": require_approval,
	"deny": deny,
	"approval": approval,
	"obligations": [],
}
