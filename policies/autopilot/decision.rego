# The one decision every action passes before it executes:
#   data.autopilot.decision = {allow, require_approval, deny: [{code, msg}],
#                              approval: [{role, reason, sla_hours}], obligations: [...]}
# Each concern lives in its own package (folder); this file only combines them.
# Codes and reasons are built in rule bodies (policies/README.md has the code table).
package autopilot

import rego.v1

deny := (((((((data.autopilot.input.deny | data.autopilot.scope.deny) | data.autopilot.budget.deny) | data.autopilot.discount.deny) | data.autopilot.contact.deny) | data.autopilot.consent.deny) | data.autopilot.residency.deny))

# Not named `approval`: that path is the approval package itself.
required_approvals := data.autopilot.approval.required

allow := count(deny) == 0

default require_approval := false

require_approval if {
	allow
	count(required_approvals) > 0
}

obligations := data.autopilot.approval.obligations | data.autopilot.consent.obligations

decision := {
	"allow": allow,
	"require_approval": require_approval,
	"deny": deny,
	"approval": required_approvals,
	"obligations": obligations,
}
