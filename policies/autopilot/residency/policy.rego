# Data residency: a tool may send account data only to regions allowed for the
# account's region.
package autopilot.residency

import rego.v1

allowed := data.autopilot.residency.limits.allowed[input.account.region]

deny contains {"code": "residency.region_not_allowed", "msg": msg} if {
	is_string(input.action.data_region)
	not input.action.data_region in allowed
	msg := sprintf("tool '%s' sends data to region '%s', not allowed for a '%s' account",
		[input.action.tool, input.action.data_region, input.account.region])
}

deny contains {"code": "residency.unknown_region", "msg": sprintf("no residency rules for region '%s'", [input.account.region])} if {
	is_string(input.account.region)
	not data.autopilot.residency.limits.allowed[input.account.region]
}
